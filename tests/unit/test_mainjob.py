"""The main job's pure parts: the container environment, discovery over a fake chain, event rendering."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import RunState
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, PERMISSIONLESS_GRANTEE
from psyche.errors import RunManagerError
from psyche.manager import events as ev
from psyche.manager.mainjob import container_env, discover_run
from psyche.manager.render import MANAGER_PREFIX, EventRenderer
from psyche.manager.settings import load_settings
from psyche.manager.ui import UI
from tests.unit.test_queries import OWNER, FakeChain, seed_authorization, seed_run

SECRET = "[" + ",".join(str(b) for b in bytes(Keypair())) + "]"


def test_container_env_carries_every_variable_with_validated_values(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        'RPC="http://127.0.0.1:8899"\nWS_RPC=ws://127.0.0.1:8900\n'
        "RPC_2=http://127.0.0.1:9899\nWS_RPC_2=ws://127.0.0.1:9900\n"
        "RUN_ID=stale\nAUTHORIZER=11111111111111111111111111111111\nHF_TOKEN=abc\n"
        "DATA_PARALLELISM=2\nPARALLELISM_AUTO=yes\n"
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
