"""Owner commands at Solana's limits, and with a non-default treasurer index, on `run-manager localnet`."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import pda
from tests.support.commands import (
    Cli,
    Localnet,
    cli,
    error_line,
    net,
    with_world,
    write_keypair,
)
from tests.support.paths import worst_toml

pytestmark = pytest.mark.slow

__all__ = ["cli", "net"]  # fixtures used by name


@pytest.fixture(scope="module")
def endpoints() -> str:
    """One endpoint set: the RPC fallback is covered by test_commands_runs; these tests are about limits."""
    return "RPC"


@pytest.fixture
def owner(net: Localnet, tmp_path: Path) -> tuple[Path, Keypair]:
    key = Keypair()
    net.airdrop(key)
    return write_keypair(tmp_path, "owner", key), key


def _mint(net: Localnet, key: Keypair) -> Pubkey:
    return with_world(net, key, lambda w: w.create_mint(6))


def test_a_missing_treasurer_index_names_the_one_the_run_was_created_with(
    cli: Cli, owner: tuple[Path, Keypair], net: Localnet
) -> None:
    path, key = owner
    w = ("-w", path)
    mint = str(_mint(net, key))
    cli.ok(
        "create-run",
        "-r",
        "idx3",
        "-c",
        "v1",
        "--treasurer-collateral-mint",
        mint,
        "--treasurer-index",
        "3",
        *w,
    )
    cli.ok(
        "create-run",
        "-r",
        "idx5",
        "-c",
        "v1",
        "--treasurer-collateral-mint",
        mint,
        "--treasurer-index",
        "5",
        *w,
    )
    default = f"index {pda.treasurer_index('idx3')} (the default, from sha256 of the run id)"
    fix = "it was created with --treasurer-index 3: pass --treasurer-index 3"
    for args in (
        ("update-config", "-r", "idx3", "--name", "x"),
        ("set-future-epoch-rates", "-r", "idx3", "--earning-rate-total-shared", "1"),
        ("treasurer-top-up-rewards", "-r", "idx3", "--collateral-amount", "1"),
    ):
        result = cli.fails(*args, *w)
        assert error_line(result) == f"Error: run 'idx3' has no treasurer at {default}; {fix}", args
    absent = cli.fails("update-config", "-r", "idx3", "--name", "x", "--treasurer-index", "4", *w)
    assert error_line(absent) == f"Error: run 'idx3' has no treasurer at index 4; {fix}"
    other = cli.fails("update-config", "-r", "idx3", "--name", "x", "--treasurer-index", "5", *w)
    assert error_line(other) == f"Error: run 'idx3' is not the run of the treasurer at index 5; {fix}"
    done = cli.json("update-config", "-r", "idx3", "--name", "x", "--treasurer-index", "3", *w)
    assert done["changed"] == ["metadata"] and done["treasurer_run"] == str(pda.treasurer_run(3))


def test_update_config_at_its_longest_on_a_treasurer_run_lands_in_two_transactions(
    cli: Cli, owner: tuple[Path, Keypair], net: Localnet, tmp_path: Path
) -> None:
    path, key = owner
    w = ("-w", path, "--treasurer-index", "7")
    cli.ok("create-run", "-r", "long", "-c", "v1", "--treasurer-collateral-mint", str(_mint(net, key)), *w)
    flags = [
        *("--config-path", str(worst_toml(tmp_path)), "--restart-from-step", "1"),
        *("--name", "n" * 64, "--description", "d" * 280),
        *("--num-parameters", str(2**64 - 1), "--vocab-size", str(2**64 - 1)),
        *("--client-version", "c" * 96),
    ]
    done = cli.json("update-config", "-r", "long", *flags, *w)
    assert len(done["signatures"]) == 2 and done["signature"] == done["signatures"][1]
    # A plain run: update, then update_client_version, in two transactions as well.
    cli.ok("create-run", "-r", "long-plain", "-c", "v1", "-w", path)
    plain = cli.json("update-config", "-r", "long-plain", *flags, "-w", path)
    assert len(plain["signatures"]) == 2
    for run_id, extra in (("long", ("--treasurer-index", "7")), ("long-plain", ())):
        setup = cli.json("json-dump-run", "-r", run_id, *extra)["coordinator_account"]["setup"]
        assert setup["client_version"] == "c" * 96
        assert (setup["metadata"]["name"], setup["metadata"]["description"]) == ("n" * 64, "d" * 280)
        assert setup["model"]["LLM"]["checkpoint"] == {"Hub": {"repo_id": "o" * 64, "revision": "r" * 64}}


def test_a_long_delegate_list_is_sent_in_several_transactions(
    cli: Cli, owner: tuple[Path, Keypair], net: Localnet, tmp_path: Path
) -> None:
    path, key = owner
    user = Keypair()
    net.airdrop(user)
    user_path = write_keypair(tmp_path, "user", user)
    cli.ok("join-authorization-create", "--authorizer", str(user.pubkey()), "-w", path)
    delegates = [str(Pubkey.new_unique()) for _ in range(45)]
    added = cli.json(
        "join-authorization-delegate", "--join-authority", str(key.pubkey()), "--delegates-added", *delegates,
        "-w", user_path,
    )  # fmt: skip
    assert len(added["signatures"]) == 2
    assert added["delegates"] == delegates
