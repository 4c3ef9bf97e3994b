"""The main job's pure parts: the container environment, discovery over a fake chain, event rendering."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import RunState
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE
from psyche.chain.rpc import AccountInfo
from psyche.errors import RpcUnavailable, RunManagerError
from psyche.manager import events as ev
from psyche.manager.app import App, RootOptions
from psyche.manager.chainwait import ChainWait
from psyche.manager.launch import RestartPolicy
from psyche.manager.mainjob import container_env, discover_run, select_run
from psyche.manager.render import MANAGER_PREFIX, EventRenderer
from psyche.manager.settings import load_settings
from psyche.manager.ui import UI
from tests.support.clock import FakeClock
from tests.support.fake_chain import OWNER, FakeChain, seed_authorization, seed_run

SECRET = "[" + ",".join(str(b) for b in bytes(Keypair())) + "]"


def test_container_env_carries_every_variable_with_validated_values(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        'RPC="http://127.0.0.1:8899"\nWS_RPC=ws://127.0.0.1:8900\n'
        "RPC_2=http://127.0.0.1:9899\nWS_RPC_2=ws://127.0.0.1:9900\n"
        "RUN_ID=stale\nAUTHORIZER=11111111111111111111111111111111\nHF_TOKEN=abc\n"
        "DATA_PARALLELISM=2\nPARALLELISM_AUTO=yes\n"
        "P2P_PORT=4100\nP2P_BOOTSTRAP=10.0.0.2:4100 , 10.0.0.3:4100\n"
    )
    settings = load_settings(env_file, {"HOME": str(tmp_path)})
    grantee = Pubkey.new_unique()
    env = container_env(settings, SECRET, "the-run", grantee)
    assert env["RPC"] == "http://127.0.0.1:8899"  # quotes removed once, by the one parser
    assert env["RPC_2"] == "http://127.0.0.1:9899" and env["WS_RPC_2"] == "ws://127.0.0.1:9900"
    assert env["RUN_ID"] == "the-run"
    assert env["AUTHORIZER"] == str(grantee)  # the grantee found, not the .env's value
    assert env["HF_TOKEN"] == "abc"
    assert env["DATA_PARALLELISM"] == "2"
    assert env["PARALLELISM_AUTO"] == "true"  # normalised for the client
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "all"
    assert env["RAW_WALLET_PRIVATE_KEY"] == SECRET
    assert env["P2P_PORT"] == "4100" and env["P2P_BIND"] == "0.0.0.0"  # the client's default, explicit
    assert env["P2P_BOOTSTRAP"] == "10.0.0.2:4100,10.0.0.3:4100"  # normalised for the client
    assert "P2P_ADVERTISE" not in env  # unset: the client works it out


def test_p2p_variables_from_the_shell_reach_the_container() -> None:
    shell = {"RPC": "http://127.0.0.1:8899", "P2P_PORT": "4300", "P2P_ADVERTISE": "192.0.2.7"}
    env = container_env(load_settings(None, shell), SECRET, "the-run", Pubkey.new_unique())
    assert env["P2P_PORT"] == "4300" and env["P2P_ADVERTISE"] == "192.0.2.7"


def test_discovery_prints_the_table_and_selects_waiting_runs_first() -> None:
    chain = FakeChain()
    seed_run(chain, "training", state=RunState.RoundTrain, coordinator=Pubkey.new_unique())
    seed_run(chain, "waiting", state=RunState.WaitingForMembers, coordinator=Pubkey.new_unique())
    seed_run(chain, "paused", state=RunState.Paused, coordinator=Pubkey.new_unique())
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    ui, out, _ = UI.for_tests()
    chosen = discover_run(chain, Pubkey.new_unique(), None, None, DEFAULT_PROGRAM_IDS, ui, now=1000)
    assert chosen.run.run_id == "waiting"
    assert chosen.grantee == PERMISSIONLESS_GRANTEE
    lines = out.getvalue().splitlines()
    assert lines[0] == "Found 2 available run(s):"
    assert lines[1].split() == ["run-id", "state", "clients", "epoch", "time", "time", "left"]
    assert lines[2].startswith("  waiting    Waiting for members")
    assert lines[3].startswith("  training   Training")
    assert lines[-1] == "Selected run: waiting (Waiting for members, 0 training)"


def test_discovery_join_authority_filter_and_nothing_joinable() -> None:
    chain = FakeChain()
    seed_run(chain, "waiting")
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    ui, _, _ = UI.for_tests()
    user = Pubkey.new_unique()
    with pytest.raises(RunManagerError, match=f"No joinable runs found for user {user}"):
        discover_run(chain, user, None, Pubkey.new_unique(), DEFAULT_PROGRAM_IDS, ui, now=0)
    assert discover_run(chain, user, None, OWNER, DEFAULT_PROGRAM_IDS, ui, now=0).run.run_id == "waiting"


def test_discovery_without_any_run_names_the_program() -> None:
    ui, _, _ = UI.for_tests()
    with pytest.raises(RunManagerError, match="No runs found on coordinator program 4SHug"):
        discover_run(FakeChain(), Pubkey.new_unique(), None, None, DEFAULT_PROGRAM_IDS, ui, now=0)


class FlakyChain(FakeChain):
    """The chain goes away after listing the runs (``outage`` reads of one run fail), then comes back."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        if self.outage:
            self.outage -= 1
            raise RpcUnavailable({"http://127.0.0.1:8899": "timed out after 10s (ReadTimeout)"})
        return super().get_account_info(pubkey)


DOWN_LINE = (
    f"Warning: {MANAGER_PREFIX} chain unreachable, retrying until it answers (next try in 1s): "
    "all RPC endpoints failed: http://127.0.0.1:8899: timed out after 10s (ReadTimeout)"
)


def chain_wait(clock: FakeClock, on_event: Callable[[ev.Event], None]) -> ChainWait:
    """The main job's start-up wait, on a fake clock."""

    def sleep(delay: float) -> bool:
        clock.sleep(delay)
        return True

    return ChainWait(RestartPolicy().chain_retry, sleep, on_event, monotonic=clock.monotonic)


def test_discovery_waits_out_a_chain_lost_mid_lookup_instead_of_finding_nothing_joinable() -> None:
    chain = FlakyChain(outage=2)
    seed_run(chain, "waiting")
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    ui, out, err = UI.for_tests()
    wait = chain_wait(FakeClock(), EventRenderer(ui))
    user = Pubkey.new_unique()
    chosen = wait.read(lambda: discover_run(chain, user, None, None, DEFAULT_PROGRAM_IDS, ui, 0))
    assert chosen.run.run_id == "waiting"
    # The table once, from the lookup that worked; one line each way for two failed lookups (1 s + 2 s).
    assert out.getvalue().count("Found 1 available run(s):") == 1
    assert err.getvalue().splitlines() == [DOWN_LINE, f"{MANAGER_PREFIX} chain reachable again after 3s"]


def test_run_id_lookup_waits_out_a_chain_down_at_start_up_and_says_what_it_looks_up_once(
    tmp_path: Path,
) -> None:
    wallet = tmp_path / "id.json"
    wallet.write_text(SECRET)
    wallet.chmod(0o600)
    env_file = tmp_path / ".env"
    env_file.write_text(f"RPC=http://127.0.0.1:8899\nRUN_ID=waiting\nWALLET_PRIVATE_KEY_PATH={wallet}\n")
    ui, _, err = UI.for_tests()
    app = App(ui=ui, environ={"HOME": str(tmp_path)}, options=RootOptions(env_file=env_file))
    chain = FlakyChain(outage=3)
    seed_run(chain, "waiting")
    seed_authorization(chain, PERMISSIONLESS_GRANTEE)
    app._rpc = chain  # type: ignore[assignment]  # the reads select_run makes, from a fake chain
    selected = select_run(app, DEFAULT_PROGRAM_IDS, wait=chain_wait(FakeClock(), EventRenderer(ui)).read)
    assert (selected.run.run_id, selected.grantee) == ("waiting", PERMISSIONLESS_GRANTEE)
    assert err.getvalue().splitlines() == [
        "AUTHORIZER env var not set, skipping delegate key authorization",
        "Using RUN_ID from environment: waiting",
        DOWN_LINE,
        f"{MANAGER_PREFIX} chain reachable again after 7s",  # 1 + 2 + 4 s
    ]


def test_renderer_gives_up_with_a_warning_leaving_the_one_error_line_to_the_error() -> None:
    ui, _, err = UI.for_tests()
    EventRenderer(ui, stdout=io.StringIO())(
        ev.GivingUp("exit code 3, 3 quick failures in a row", 3, ("boom",))
    )
    assert err.getvalue().splitlines() == [
        f"Warning: {MANAGER_PREFIX} giving up: exit code 3, 3 quick failures in a row",
        f"{MANAGER_PREFIX} last 1 client log lines:",
        "  boom",
    ]


def test_discovery_with_only_unreadable_runs_says_so_instead_of_no_runs() -> None:
    chain = FakeChain()
    seed_run(chain, "broken")
    coordinator = next(a for a, info in chain.accounts.items() if len(info.data) > 10_000)
    chain.accounts[coordinator] = chain.accounts[coordinator]._replace(data=b"\0" * 64)
    ui, _, _ = UI.for_tests()
    with pytest.raises(
        RunManagerError, match=r"^none of the 1 run account\(s\) of coordinator program 4SHug"
    ):
        discover_run(chain, Pubkey.new_unique(), None, None, DEFAULT_PROGRAM_IDS, ui, now=0)


def test_renderer_keeps_client_lines_verbatim_and_marks_manager_lines() -> None:
    ui, _, err = UI.for_tests()
    stdout = io.StringIO()
    render = EventRenderer(ui, stdout=stdout)
    render(ev.ContainerStarted("abcdef1234567890", "psyche-client-x", "img:v1", "v1"))
    render(ev.LogLine("step 1 loss 2.5"))
    render(ev.LogLine("[run-manager] looks like us but is the client"))
    render(ev.Restarting(2, 10.0, "client exited with code 1"))
    assert stdout.getvalue().splitlines() == [
        "step 1 loss 2.5",
        "[run-manager] looks like us but is the client",
    ]
    manager = err.getvalue().splitlines()
    assert (
        manager[0]
        == f"{MANAGER_PREFIX} started psyche-client-x (abcdef123456) from img:v1, CLIENT_VERSION=v1"
    )
    assert manager[1].startswith(f"Warning: {MANAGER_PREFIX} restarting the client in 10s (attempt 2)")
    assert render.log_lines == 2


def test_wallet_key_via_auto_falls_back_to_the_env_for_a_remote_engine() -> None:
    from psyche.manager.mainjob import wallet_key_via

    assert [wallet_key_via(flag, True) for flag in ("auto", "file", "env")] == ["auto", "file", "env"]
    assert [wallet_key_via(flag, False) for flag in ("auto", "file", "env")] == ["env", "file", "env"]


def test_renderer_says_how_the_wallet_key_travels() -> None:
    ui, _, err = UI.for_tests()
    render = EventRenderer(ui, stdout=io.StringIO())
    render(ev.WalletKeyDelivery("file", "img:v1", "auto"))
    render(ev.WalletKeyDelivery("env", "img:v2", "auto"))
    render(ev.WalletKeyDelivery("file", "img:v3", "file"))
    assert err.getvalue().splitlines() == [
        f"{MANAGER_PREFIX} wallet key for img:v1: a read-only file on a tmpfs mount, not in the container's "
        "environment (its label psyche.client.key-file=1)",
        f"{MANAGER_PREFIX} wallet key for img:v2: RAW_WALLET_PRIVATE_KEY in the container's environment "
        "(no psyche.client.key-file label)",
        f"{MANAGER_PREFIX} wallet key for img:v3: a read-only file on a tmpfs mount, not in the container's "
        "environment (--wallet-key-via)",
    ]


class CountingFlushes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_renderer_writes_a_batch_of_client_lines_with_one_flush() -> None:
    ui, _, err = UI.for_tests()
    stdout = CountingFlushes()
    render = EventRenderer(ui, stdout=stdout)
    render(ev.LogLines((ev.LogLine("one"), ev.LogLine("two", "stderr"), ev.LogLine(""))))
    assert (stdout.getvalue(), stdout.flushes, render.log_lines) == ("one\ntwo\n\n", 1, 3)
    render(ev.LogLines((ev.LogLine("three"),)))  # a quiet client's line is flushed at once too
    assert (stdout.getvalue().splitlines()[-1], stdout.flushes, render.log_lines) == ("three", 2, 4)
    assert err.getvalue() == ""


def test_renderer_prefixes_each_line_of_a_batch_with_its_timestamp() -> None:
    ui, _, _ = UI.for_tests()
    stdout = io.StringIO()
    render = EventRenderer(ui, stdout=stdout, timestamps=True)
    when = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    render(ev.LogLines((ev.LogLine("stamped", timestamp=when), ev.LogLine("bare"))))
    assert stdout.getvalue() == "2024-01-02T03:04:05.678+00:00 stamped\nbare\n"


def test_renderer_summarises_pull_progress_when_not_a_terminal() -> None:
    ui, _, err = UI.for_tests()
    clock = iter([0.0, 1.0, 6.0])
    render = EventRenderer(ui, stdout=io.StringIO(), monotonic=lambda: next(clock))
    render(ev.PullStarted("img:v2", 1))
    render(ev.PullProgress("aaa", "Downloading", 50_000_000, 100_000_000))
    render(ev.PullProgress("bbb", "Pull complete", None, None))
    render(ev.PullDone("img:v2", 3.2))
    lines = err.getvalue().splitlines()
    assert lines[0] == f"{MANAGER_PREFIX} pulling img:v2"
    assert lines[1] == f"{MANAGER_PREFIX} pulling img:v2: 0/2 layers, 50.0/100.0 MB"
    assert lines[2] == f"{MANAGER_PREFIX} pulled img:v2 in 3.2s"
