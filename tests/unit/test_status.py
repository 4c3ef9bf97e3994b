"""`run-manager status`: containers by label, the run and rewards over a fake chain, the screen, the CLI."""

from __future__ import annotations

import gc
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, TOKEN_PROGRAM_ID, TREASURER_PROGRAM_ID
from psyche.errors import ContainerRuntimeError, DockerUnavailable
from psyche.manager.cli import cli
from psyche.manager.launch import (
    LABEL_CLIENT_VERSION,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_RUN_ID,
    LABEL_WALLET,
)
from psyche.manager.runtime import ContainerInfo
from psyche.manager.status import (
    P2PView,
    StatusReport,
    collect,
    container_view,
    duration,
    find_containers,
    p2p_status_path,
    read_p2p_status,
    render,
    render_p2p,
    tokens,
)
from tests.support.fake_chain import COORD, MINT, OWNER, FakeChain, seed_run

USER = Pubkey.new_unique()
NOW = 1_750_000_000.0


def info(name: str, status: str, *, run_id: str = "test", created: float | None = NOW - 125) -> ContainerInfo:
    labels = {
        LABEL_MANAGED: "true",
        LABEL_RUN_ID: run_id,
        LABEL_INSTANCE: "0123456789abcdef",
        LABEL_CLIENT_VERSION: "v1",
    }
    return ContainerInfo(
        "c0ffee" * 8, name, status, labels, image="127.0.0.1:5000/psyche-client:v1", created=created
    )


class LabelRuntime:
    """list_by_label over a fixed list, filtering as the engine does (every label must match)."""

    def __init__(self, containers: list[ContainerInfo], last_logs: Mapping[str, float] | None = None) -> None:
        self.containers = containers
        self.last_logs = dict(last_logs or {})
        self.asked: list[dict[str, str]] = []
        self.log_asked: list[str] = []

    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        self.asked.append(dict(labels))
        return [c for c in self.containers if all(c.labels.get(k) == v for k, v in labels.items())]

    def last_log_time(self, container_id: str) -> float | None:
        self.log_asked.append(container_id)
        if container_id == "gone":
            raise ContainerRuntimeError(
                "reading the last log line of container gone failed: No such container"
            )
        return self.last_logs.get(container_id)


class NoEngine:
    def list_by_label(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        raise DockerUnavailable("Failed to execute docker command. Is Docker installed and accessible?")


def seed_treasurer(chain: FakeChain, *, earned: int, claimed: int, treasury: int) -> None:
    seed_run(chain, state=RunState.RoundTrain, epoch_clients=(USER,), ledger=((USER, earned),))
    index = pda.treasurer_index("test")
    address, bump = pda.find_treasurer_run(index)
    run = TreasurerRun(bump, index, OWNER, OWNER, COORD, pda.coordinator_instance("test"), MINT, 100, 100)
    chain.put(address, run.encode(), TREASURER_PROGRAM_ID)
    chain.put(MINT, Mint(OWNER, 10**12, 6).encode(), TOKEN_PROGRAM_ID)
    part, part_bump = pda.find_participant(address, USER)
    chain.put(part, Participant(part_bump, 100, claimed).encode(), TREASURER_PROGRAM_ID)
    ata = pda.associated_token_account(address, MINT)
    chain.put(ata, TokenAccount(MINT, address, treasury).encode(), TOKEN_PROGRAM_ID)


def test_container_view_reads_labels_uptime_and_restarts_from_the_name() -> None:
    view = container_view(info("psyche-client-test-01234567-3", "Up 2 minutes"), NOW)
    assert (view.client_version, view.run_id, view.running) == ("v1", "test", True)
    assert view.uptime_s == 125
    assert view.restarts == 2  # the third container this run-manager started


def test_the_last_log_line_age_comes_from_the_engine_for_running_containers_only() -> None:
    frozen = ContainerInfo("frozen", "psyche-client-test-01234567-2", "Up 10 minutes", info("x", "Up").labels)
    quiet = ContainerInfo("quiet", "psyche-client-test-89abcdef-1", "Up 1 second", info("x", "Up").labels)
    gone = ContainerInfo("gone", "psyche-client-test-89abcdef-2", "Up 2 seconds", info("x", "Up").labels)
    exited = ContainerInfo(
        "exited", "psyche-client-test-01234567-1", "Exited (137) 1 minute ago", frozen.labels
    )
    runtime = LabelRuntime([frozen, quiet, gone, exited], {"frozen": NOW - 428.6, "exited": NOW - 60})

    # LabelRuntime is a partial fake: only what find_containers reads (the ignores below say the same).
    views = {v.id: v for v in find_containers(runtime, None, NOW)}  # type: ignore[arg-type]

    assert runtime.log_asked == ["frozen", "quiet", "gone"]  # never for a container that is not running
    assert views["frozen"].last_log_age_s == pytest.approx(428.6)
    assert (views["quiet"].last_log_age_s, views["gone"].last_log_age_s, views["exited"].last_log_age_s) == (
        None,
        None,
        None,
    )
    report = StatusReport(user=None, run_id="test", containers=(views["frozen"], views["quiet"]))
    screen = render(report)
    assert "  state:          Up 10 minutes" in screen
    assert "  last log line:  7m 08s ago" in screen
    assert "  last log line:  none yet" in screen
    assert report.to_json()["containers"][0]["last_log_age_s"] == pytest.approx(428.6)


def test_a_stopped_container_has_no_uptime() -> None:
    view = container_view(info("psyche-client-test-01234567-1", "Exited (1) 3 seconds ago"), NOW)
    assert (view.running, view.uptime_s, view.restarts) == (False, None, 0)


def test_several_wallets_on_one_host_each_see_their_own_container() -> None:
    def of(wallet: str | None, name: str) -> ContainerInfo:
        base = info(name, "Up 2 minutes")
        labels = dict(base.labels) if wallet is None else {**base.labels, LABEL_WALLET: wallet}
        return ContainerInfo(base.id, name, base.status, labels, image=base.image, created=base.created)

    mine, theirs = str(USER), str(Pubkey.new_unique())
    runtime = LabelRuntime([of(mine, "mine-1"), of(theirs, "theirs-1"), of(None, "older-1")])
    views = find_containers(runtime, "test", NOW, mine)  # type: ignore[arg-type]
    assert [(v.name, v.wallet) for v in views] == [("mine-1", mine), ("older-1", None)]
    assert len(find_containers(runtime, "test", NOW)) == 3  # type: ignore[arg-type]


def test_collect_filters_by_run_id_and_reads_rewards() -> None:
    chain = FakeChain()
    seed_treasurer(chain, earned=12_500_000, claimed=2_000_000, treasury=5_000_000)
    runtime = LabelRuntime(
        [info("psyche-client-test-01234567-1", "Up 2 minutes"), info("other-1", "Up 1 hour", run_id="b")]
    )
    report = collect(
        runtime=lambda: runtime,  # type: ignore[arg-type,return-value]
        rpc=lambda: chain,
        run_id="test",
        user=USER,
        programs=DEFAULT_PROGRAM_IDS,
        now=NOW,
    )
    assert runtime.asked == [{LABEL_MANAGED: "true", LABEL_RUN_ID: "test"}]
    assert [c.name for c in report.containers] == ["psyche-client-test-01234567-1"]
    assert report.run is not None
    assert (report.run.state, report.run.user_in_epoch, report.run.earned_points) == (
        "Training",
        True,
        12_500_000,
    )
    assert report.rewards is not None
    assert (report.rewards.earned, report.rewards.claimed, report.rewards.claimable) == (
        12_500_000,
        2_000_000,
        5_000_000,  # capped by what the treasury holds
    )
    assert report.exit_code == 0
    screen = "\n".join(render(report))
    assert "  uptime:         2m 05s" in screen
    assert "  restarts:       0" in screen
    assert "  state:          Training" in screen
    assert "  earned:    12.5 (12500000 points)" in screen
    assert "  claimable: 5 (treasury holds 5)" in screen


def test_without_run_id_the_running_container_names_the_run() -> None:
    chain = FakeChain()
    seed_run(chain)
    runtime = LabelRuntime([info("psyche-client-test-01234567-1", "Up 5 seconds")])
    report = collect(
        runtime=lambda: runtime,  # type: ignore[arg-type,return-value]
        rpc=lambda: chain,
        run_id=None,
        user=USER,
        programs=DEFAULT_PROGRAM_IDS,
        now=NOW,
    )
    assert report.run_id == "test"
    assert report.notes == ("RUN_ID is not set: showing run 'test', the one the running container joined",)
    assert report.rewards is None
    assert report.rewards_note == "the run has no treasurer: points are not paid out as tokens"


def test_no_engine_and_no_run_are_reported_and_exit_1() -> None:
    report = collect(
        runtime=NoEngine,  # type: ignore[arg-type]
        rpc=FakeChain,
        run_id="nope",
        user=USER,
        programs=DEFAULT_PROGRAM_IDS,
        now=NOW,
    )
    assert report.exit_code == 1
    screen = render(report)
    assert "  Docker: Failed to execute docker command. Is Docker installed and accessible?" in screen
    assert (
        "(run 'nope', endpoint https://rpc.fake/?api-key=***): no coordinator instance account"
        in "\n".join(screen)
    )
    assert json.loads(json.dumps(report.to_json()))["exit_code"] == 1


@pytest.mark.parametrize(
    ("seconds", "text"), [(42, "42s"), (429, "7m 09s"), (7_500, "2h 05m"), (273_600, "3d 4h")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_tokens() -> None:
    assert (tokens(10_500_000, 6), tokens(0, 6), tokens(7, 0), tokens(1, 6)) == ("10.5", "0", "7", "0.000001")


def test_cli_status_without_engine_or_chain_prints_the_screen_and_exits_1(tmp_path: Path) -> None:
    wallet = tmp_path / "id.json"
    wallet.write_text(json.dumps(list(bytes(Keypair()))))
    wallet.chmod(0o600)
    env_file = tmp_path / ".env"
    env_file.write_text(f"RPC=http://127.0.0.1:9\nRUN_ID=test\nWALLET_PRIVATE_KEY_PATH={wallet}\n")
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "NO_COLOR": "1"}
    result = CliRunner().invoke(cli, ["status", "--env-file", str(env_file)], obj=environ)
    gc.collect()  # a leaked socket would warn here, and warnings are errors
    assert result.exit_code == 1, result.output
    assert "Container\n  Docker: Failed to execute docker command. Is Docker installed and accessible?" in (
        result.stdout
    )
    assert "Run test\n  all RPC endpoints failed: http://127.0.0.1:9" in result.stdout


# -- the client's P2P status file ------------------------------------------------------------------------

P2P_STATUS = {
    "updated_at": NOW - 7.5,
    "epoch": 1,
    "round": 12,
    "address": "127.0.0.1:4101",
    "peers_seen": 2,
    "results_received": 2,
    "results_applied": 3,
    "refused": {"bad_signature": 1, "oversized": 4, "not_assigned": 0},
}


def test_the_p2p_status_file_is_shown_with_its_age(tmp_path: Path) -> None:
    path = p2p_status_path(tmp_path)
    assert path == tmp_path / "p2p-status.json"
    path.write_text(json.dumps(P2P_STATUS))
    report = collect(
        runtime=NoEngine,  # type: ignore[arg-type]
        rpc=FakeChain,
        run_id="nope",
        user=USER,
        programs=DEFAULT_PROGRAM_IDS,
        now=NOW,
        p2p_file=path,
    )
    assert report.p2p == P2PView(
        address="127.0.0.1:4101",
        epoch=1,
        round=12,
        peers_seen=2,
        results_received=2,
        results_applied=3,
        refused={"bad_signature": 1, "oversized": 4, "not_assigned": 0},
        age_s=7.5,
    )
    screen = "\n".join(render(report))
    assert (
        "P2P\n"
        "  address:    127.0.0.1:4101\n"
        "  peers seen: 2\n"
        "  last round: epoch 1, round 12\n"
        "  results:    2 received, 3 applied\n"
        "  refused:    bad_signature 1, oversized 4\n"
        "  updated:    7s ago\n"
    ) in screen
    assert json.loads(json.dumps(report.to_json()))["p2p"]["peers_seen"] == 2


def test_without_a_status_file_p2p_says_so() -> None:
    assert render_p2p(*read_p2p_status(Path("/nonexistent/p2p-status.json"), NOW)) == [
        "P2P",
        "  p2p: no status yet",
    ]
    view, note = read_p2p_status(None, NOW)
    assert view is None and note == (
        "p2p: no status yet (SCRATCH_DIR is unset: the client's status file is not on this host)"
    )


def test_an_old_or_broken_status_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "p2p-status.json"
    path.write_text(json.dumps({**P2P_STATUS, "updated_at": NOW - 3600}))
    view, _ = read_p2p_status(path, NOW)
    assert render_p2p(view, None)[-1] == (
        "  updated:    1h 00m ago (stale: the client has not written it since; is it running?)"
    )
    path.write_text(json.dumps({**P2P_STATUS, "peers_seen": -1}))
    assert read_p2p_status(path, NOW) == (
        None,
        f"p2p: {path} is not a status file: peers_seen is not a whole number >= 0",
    )
    path.write_text('{"updated_at": ')  # a torn write (the client renames atomically; a hand copy may not)
    view, note = read_p2p_status(path, NOW)
    assert view is None and note is not None and note.startswith(f"p2p: {path} is not a status file: ")


def test_the_status_file_follows_a_checkpoint_dir_under_scratch(tmp_path: Path) -> None:
    assert p2p_status_path(tmp_path, "/scratch/ckpt") == tmp_path / "ckpt" / "p2p-status.json"
    assert p2p_status_path(tmp_path, "/data/ckpt") is None  # the container's own directory
    assert p2p_status_path(None) is None


def test_cli_status_shows_the_p2p_section_from_scratch_dir(tmp_path: Path) -> None:
    (tmp_path / "p2p-status.json").write_text(json.dumps(P2P_STATUS))
    env_file = tmp_path / ".env"
    env_file.write_text(f"RPC=http://127.0.0.1:9\nRUN_ID=test\nSCRATCH_DIR={tmp_path}\n")
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "NO_COLOR": "1", "HOME": str(tmp_path)}
    result = CliRunner().invoke(cli, ["status", "--env-file", str(env_file), "--json"], obj=environ)
    gc.collect()
    shown = json.loads(result.stdout)
    assert shown["p2p"]["address"] == "127.0.0.1:4101" and shown["p2p_note"] is None
