"""The container environment contract: what the run-manager writes is what the client reads.

The manager's side (mainjob.container_env, then LaunchConfig.spec_for) builds a container's environment;
the client's side (client/env.py, client/config.py, client/entrypoint.py, p2p/settings.py) parses it. A
name spelled differently on one side (RPC2 for RPC_2, say) loses the value on the way, and these fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.client.entrypoint import missing_required, run_once
from psyche.client.env import load_client_env
from psyche.env_contract import ClientEnvVars
from psyche.manager.constants import EnvVars
from psyche.manager.images import image_for_version
from psyche.manager.launch import LaunchConfig
from psyche.manager.mainjob import container_env
from psyche.manager.settings import Settings, load_settings
from psyche.p2p.settings import load_p2p_settings

KEYPAIR = Keypair()
SECRET = "[" + ",".join(str(b) for b in bytes(KEYPAIR)) + "]"
COORDINATOR = Pubkey.new_unique()
ENV_FILE = {
    "RPC": "http://127.0.0.1:8899",
    "WS_RPC": "ws://127.0.0.1:8900",
    "RPC_2": "http://127.0.0.1:9899",
    "WS_RPC_2": "ws://127.0.0.1:9900",
    "RPC_3": "http://127.0.0.1:10899",
    "WS_RPC_3": "ws://127.0.0.1:10900",
    "DATA_PARALLELISM": "2",
    "TENSOR_PARALLELISM": "4",
    "MICRO_BATCH_SIZE": "8",
    "PARALLELISM_AUTO": "no",
    "P2P_PORT": "4100",
    "P2P_ADVERTISE": "192.0.2.7:4200",
    "P2P_BOOTSTRAP": "10.0.0.2:4100,10.0.0.3:4101",
    "COORDINATOR_PROGRAM_ID": str(COORDINATOR),
}


def _settings(tmp_path: Path) -> Settings:
    """Settings from an .env holding every value above (the path of `run-manager --env-file`)."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in ENV_FILE.items()))
    return load_settings(env_file, {"HOME": str(tmp_path)})


def _client_environment(settings: Settings, grantee: Pubkey) -> dict[str, str]:
    """The environment a client container of run 'the-run' at client_version 'v1' starts with."""
    launch = LaunchConfig(run_id="the-run", env=container_env(settings, SECRET, "the-run", grantee))
    return dict(launch.spec_for(image_for_version("v1", local=False), 0).env)


def test_the_client_reads_every_chain_setting_the_manager_writes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    grantee = Pubkey.new_unique()
    client = load_client_env(_client_environment(settings, grantee))
    assert [(e.http, e.ws) for e in client.endpoints] == [(e.http, e.ws) for e in settings.endpoints]
    assert len(client.endpoints) == 3  # the primary and both backups crossed over
    assert client.run_id == "the-run"
    assert client.authorizer == grantee
    assert client.keypair.pubkey() == KEYPAIR.pubkey()
    assert client.client_version == "v1"
    assert client.programs.coordinator == COORDINATOR


def test_the_client_reads_the_parallelism_p2p_and_run_once_the_manager_writes(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # load_trainer_env checks the model preset against the torch model's
    from psyche.client.config import load_trainer_env

    env = _client_environment(_settings(tmp_path), Pubkey.new_unique())
    trainer = load_trainer_env(env, scratch=Path("/nonexistent"))
    assert (trainer.data_parallelism, trainer.tensor_parallelism, trainer.micro_batch_size) == (2, 4, 8)
    assert trainer.parallelism_auto is False
    p2p = load_p2p_settings(env)
    assert (p2p.port, p2p.advertise) == (4100, "192.0.2.7:4200")
    assert p2p.bootstrap == (("10.0.0.2", 4100), ("10.0.0.3", 4101))
    assert missing_required(env) is None
    assert run_once(env)


def test_every_name_the_manager_sets_is_in_the_contract(tmp_path: Path) -> None:
    # An .env holding only contract variables: whatever else turns up in the container was invented by
    # the manager, outside the contract.
    env = _client_environment(_settings(tmp_path), Pubkey.new_unique())
    contract = {v for k, v in vars(ClientEnvVars).items() if k.isupper()}
    contract |= {ClientEnvVars.backup_rpc(n) for n in (2, 3)} | {
        ClientEnvVars.backup_ws_rpc(n) for n in (2, 3)
    }
    assert set(env) - contract == set()


def test_the_managers_names_for_contract_variables_are_the_contracts() -> None:
    shared = {k for k in vars(EnvVars) if k.isupper() and k in vars(ClientEnvVars)}
    assert len(shared) >= 18  # every chain, parallelism and P2P name the manager reads
    assert {k: getattr(EnvVars, k) for k in shared} == {k: getattr(ClientEnvVars, k) for k in shared}
    assert EnvVars.backup_rpc(4) == ClientEnvVars.backup_rpc(4) == "RPC_4"
    assert EnvVars.backup_ws_rpc(4) == ClientEnvVars.backup_ws_rpc(4) == "WS_RPC_4"


def test_program_ids_given_outside_the_env_file_reach_the_client(tmp_path: Path) -> None:
    # The manager finds the run under the programs it was given (shell or flag); the client must follow
    # the same ones, not fall back to the default programs.
    env_file = tmp_path / ".env"
    env_file.write_text("RPC=http://127.0.0.1:8899\nWS_RPC=ws://127.0.0.1:8900\n")
    authorizer, treasurer = Pubkey.new_unique(), Pubkey.new_unique()
    shell = {
        "HOME": str(tmp_path),
        "COORDINATOR_PROGRAM_ID": str(COORDINATOR),
        "AUTHORIZER_PROGRAM_ID": str(authorizer),
        "TREASURER_PROGRAM_ID": str(treasurer),
    }
    settings = load_settings(env_file, shell)
    client = load_client_env(_client_environment(settings, Pubkey.new_unique()))
    assert (client.programs.coordinator, client.programs.authorizer, client.programs.treasurer) == (
        COORDINATOR,
        authorizer,
        treasurer,
    )
