"""Doctor checks over fakes for every seam: each check's OK/WARN/FAIL/SKIP, its fix, and the exit code."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence

import pytest
from rich.console import Console

from psyche.chain.accounts.coordinator import RunState
from psyche.chain.accounts.model import Checkpoint
from psyche.chain.programs import PERMISSIONLESS_GRANTEE
from psyche.manager.commands.doctor import render, report_json, summary
from psyche.manager.doctor import run_doctor
from psyche.manager.doctor_report import Check, DoctorOptions, Status, exit_code
from psyche.manager.engines import parse_size
from psyche.manager.hardware import (
    Gpu,
    GpuProbe,
    find_nvidia_hook,
    load_parallelism_table,
    parse_nvidia_smi,
    probe_gpus,
)
from psyche.manager.launch import LaunchConfig
from psyche.manager.procruntime import ClientProbe
from psyche.manager.settings import Settings, load_settings
from psyche.manager.ui import UI
from psyche.manager.wallet import Wallet, load_wallet
from psyche.parallelism_table import Parallelism as TableRow
from psyche.parallelism_table import normalise_gpu_name
from tests.support.doctor_world import (
    GIB,
    H100,
    KEY_JSON,
    RPC1,
    RPC2,
    RUN_MODEL,
    USER,
    WS2,
    FakeEngine,
    World,
    world,
)
from tests.support.fake_chain import FakeChain, seed_authorization, seed_run

__all__ = ["world"]  # the fixture, used by name


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {name: str(c.status) for name, c in checks.items()}


def test_healthy_machine_is_all_ok_and_exits_zero(world: World) -> None:
    checks = world.doctor()
    assert list(checks) == [
        "env", "wallet", "wallet file", "RPC", "RPC_2", "WS_RPC", "WS_RPC_2", "balance", "run", "image",
        "authorization", "p2p port", "p2p address", "p2p bootstrap", "docker", "gpu access", "wallet key",
        "disk", "gpus", "parallelism", "shm",
    ]  # fmt: skip
    assert set(statuses(checks).values()) == {"OK"}, statuses(checks)
    assert exit_code(world.checks) == 0
    assert checks["wallet"].detail.startswith(str(USER))
    assert checks["run"].detail == "'test': Waiting for members, 0 client(s) (min 0), client_version 'v1'"
    assert checks["image"].detail == "nousresearch/psyche-client:v1 (will be pulled)"
    assert (
        checks["authorization"].detail
        == f"authorized through permissionless (grantee {PERMISSIONLESS_GRANTEE})"
    )
    assert checks["gpus"].detail == "8 x NVIDIA H100 80GB HBM3 (81559 MiB, driver 550.54.15)"
    assert (
        checks["parallelism"].detail
        == "PARALLELISM_AUTO: org/model on 8 x H100 -> dp=8 tp=1 micro_batch_size=8"
    )
    assert all(c.closed for c in world.opened)


def test_invalid_env_fails_and_skips_what_needs_it(world: World) -> None:
    world.env["RPC_2"] = "htp://x"
    checks = world.doctor()
    assert checks["env"].status == Status.FAIL
    assert (
        checks["env"].detail
        == "RPC_2 in the environment: not an http(s) URL: 'htp://x'; use http:// or https://"
    )
    assert checks["wallet"].status == Status.SKIP and checks["parallelism"].status == Status.SKIP
    assert checks["docker"].status == Status.OK  # independent of the .env
    assert exit_code(world.checks) == 1


def test_missing_wallet_fails_with_the_fix(world: World) -> None:
    world.env["WALLET_PRIVATE_KEY_PATH"] = str(world.tmp / "nope.json")
    checks = world.doctor()
    assert checks["wallet"].status == Status.FAIL
    assert "no such file" in checks["wallet"].detail
    assert "solana-keygen new" in (checks["wallet"].fix or "")
    assert checks["balance"].status == checks["authorization"].status == Status.SKIP


def test_wallet_readable_by_others_warns_with_chmod(world: World) -> None:
    world.mode = 0o100644
    check = world.doctor()["wallet file"]
    assert (check.status, check.fix) == (Status.WARN, f"chmod 600 {world.tmp / 'id.json'}")
    assert "mode 0644" in check.detail


def test_raw_key_in_a_loose_env_file_warns_about_that_file(world: World) -> None:
    env_file = world.tmp / ".env"
    env_file.write_text(f"RAW_WALLET_PRIVATE_KEY={KEY_JSON}\n")
    del world.env["WALLET_PRIVATE_KEY_PATH"]
    world.mode = 0o100640
    seams = dataclasses.replace(world.seams(), settings=lambda: load_settings(env_file, world.env))
    check = {c.name: c for c in run_doctor(seams)}["wallet file"]
    assert (check.status, check.fix) == (Status.WARN, f"chmod 600 {env_file}")
    assert KEY_JSON not in check.detail


def test_dead_primary_fails_while_backup_answers_and_serves_the_chain_checks(world: World) -> None:
    world.dead.add(RPC1)
    checks = world.doctor()
    assert checks["RPC"].status == Status.FAIL
    assert checks["RPC"].detail == f"{RPC1} did not answer: ConnectError: [Errno 111] Connection refused"
    assert checks["RPC"].fix == "check RPC in the environment: URL, API key, and that the node is up"
    assert checks["RPC_2"].status == Status.OK
    assert checks["run"].status == checks["authorization"].status == Status.OK
    assert exit_code(world.checks) == 1


def test_every_rpc_dead_skips_the_chain_checks(world: World) -> None:
    world.dead |= {RPC1, RPC2}
    checks = world.doctor()
    assert [checks[n].status for n in ("balance", "run", "image", "authorization")] == [Status.SKIP] * 4


def test_latency_is_measured_per_endpoint_and_the_slowest_named(world: World) -> None:
    world.latency = {RPC1: 0.05, RPC2: 1.5}
    checks = world.doctor()
    assert checks["RPC"].detail == f"{RPC1}: slot 1234 in 50 ms"
    assert checks["RPC_2"].detail == f"{RPC2}: slot 1234 in 1500 ms (slowest)"
    assert checks["RPC_2"].status == Status.WARN
    assert exit_code(world.checks) == 0


def test_dead_websocket_fails(world: World) -> None:
    world.dead_ws.add(WS2)
    check = world.doctor()["WS_RPC_2"]
    assert check.status == Status.FAIL
    assert check.detail == f"{WS2} did not answer: ConnectionRefusedError: Connect call failed"
    assert check.fix is not None and check.fix.startswith("check WS_RPC_2 in the environment")


@pytest.mark.parametrize(
    ("lamports", "status"), [(0, Status.FAIL), (4_999, Status.FAIL), (5_000, Status.WARN), (10**7, Status.OK)]
)
def test_balance_must_cover_fees(world: World, lamports: int, status: Status) -> None:
    world.balance = lamports
    check = world.doctor()["balance"]
    assert check.status == status
    if status != Status.OK:
        assert check.fix is not None and str(USER) in check.fix


def test_run_id_unset_warns(world: World) -> None:
    del world.env["RUN_ID"]
    checks = world.doctor()
    assert (checks["run"].status, checks["run"].fix) == (Status.WARN, "set RUN_ID to check one run")
    assert checks["image"].status == checks["authorization"].status == Status.SKIP


def test_unknown_run_fails_naming_it(world: World) -> None:
    world.env["RUN_ID"] = "nope"
    check = world.doctor()["run"]
    assert check.status == Status.FAIL
    assert check.detail.startswith("RPC error: failed to get account ")
    assert check.detail.endswith(
        "(run 'nope', endpoint http://127.0.0.1:8899): no coordinator instance account at this address"
    )
    assert check.fix is not None and "COORDINATOR_PROGRAM_ID" in check.fix


@pytest.mark.parametrize(
    ("state", "status"), [(RunState.Finished, Status.FAIL), (RunState.Paused, Status.WARN)]
)
def test_run_state(world: World, state: RunState, status: Status) -> None:
    world.chain = FakeChain()
    seed_run(world.chain, state=state, model=RUN_MODEL)
    seed_authorization(world.chain, PERMISSIONLESS_GRANTEE)
    assert world.doctor()["run"].status == status


def test_local_image_must_be_present(world: World) -> None:
    check = world.doctor(local=True)["image"]
    assert check.status == Status.FAIL
    assert check.detail == "psyche-solana-client:v1: not in the engine and --local never pulls"
    world.engine = FakeEngine(images=("psyche-solana-client:v1",))
    assert world.doctor(local=True)["image"].detail == "psyche-solana-client:v1 (present in the engine)"


def test_wallet_key_mode_follows_the_flag_the_engine_and_the_image_label(world: World) -> None:
    image = "nousresearch/psyche-client:v1"
    env_words = "RAW_WALLET_PRIVATE_KEY in the container's environment (docker inspect shows it)"
    file_words = (
        "a read-only file (/run/psyche/wallet-key) on a tmpfs mount, not in the container's environment"
    )
    undecided = (
        "a read-only tmpfs file if the image has the label psyche.client.key-file=1, else the environment"
    )

    assert world.doctor()["wallet key"].detail == f"decided after the pull of {image}: {undecided}"
    world.engine = FakeEngine(images=(image,), labels={image: {"psyche.client.key-file": "1"}})
    assert world.doctor()["wallet key"].detail == f"{file_words}: {image} has psyche.client.key-file=1"
    world.engine = FakeEngine(images=(image,))  # an upstream image: it expects the variable
    assert world.doctor()["wallet key"].detail == f"{env_words}: {image} has no psyche.client.key-file label"
    assert world.doctor(wallet_key_via="env")["wallet key"].detail == f"{env_words}: --wallet-key-via env"
    assert world.doctor(wallet_key_via="file")["wallet key"].detail == f"{file_words}: --wallet-key-via file"
    remote = world.doctor(local_engine=False)["wallet key"]
    assert (remote.status, remote.detail) == (Status.OK, f"{env_words}: the engine is not on this machine")
    forced = world.doctor(local_engine=False, wallet_key_via="file")["wallet key"]
    assert (forced.status, forced.fix) == (
        Status.FAIL,
        "run on the engine's host, or use --wallet-key-via env",
    )
    world.engine = None
    assert world.doctor()["wallet key"].detail == f"decided at start: {undecided}"


def test_unauthorized_wallet_fails_listing_each_grantee(world: World) -> None:
    world.chain = FakeChain()
    seed_run(world.chain, model=RUN_MODEL)
    check = world.doctor()["authorization"]
    assert check.status == Status.FAIL
    assert f"grantee {PERMISSIONLESS_GRANTEE}: no authorization account" in check.detail
    assert f"grantee {USER}: no authorization account" in check.detail
    assert check.fix is not None and "AUTHORIZER" in check.fix


def test_own_authorization_and_already_in_epoch(world: World) -> None:
    world.chain = FakeChain()
    seed_run(world.chain, epoch_clients=(USER,), model=RUN_MODEL)
    seed_authorization(world.chain, USER)
    check = world.doctor()["authorization"]
    assert check.status == Status.WARN
    own = f"this wallet's own authorization (grantee {USER})"
    assert check.detail == f"authorized through {own}; already in the current epoch"


def test_docker_unreachable_fails_and_skips_engine_checks(world: World) -> None:
    world.engine = None
    checks = world.doctor()
    assert (checks["docker"].status, checks["docker"].fix) == (Status.FAIL, "start Docker, check DOCKER_HOST")
    assert checks["gpu access"].status == checks["disk"].status == Status.SKIP
    assert checks["image"].detail == "nousresearch/psyche-client:v1"


FIX = (
    "install the NVIDIA Container Toolkit, run 'nvidia-ctk runtime configure --runtime=docker' "
    "and restart Docker"
)
HOOK = "/usr/bin/nvidia-container-runtime-hook"


@pytest.mark.parametrize(
    ("listed", "hook", "status", "detail"),
    [
        (True, HOOK, Status.OK, f"--gpus all (device request) via {HOOK}; nvidia runtime listed"),
        # The main job never selects the nvidia runtime: a missing entry alone is fine.
        (
            False,
            HOOK,
            Status.OK,
            f"--gpus all (device request) via {HOOK}; no nvidia runtime entry (not needed)",
        ),
        (
            True,
            None,
            Status.WARN,
            "the engine lists the nvidia runtime, but no nvidia-container-runtime-hook is on this host: "
            "the client's --gpus all (device request) may be refused",
        ),
        (
            False,
            None,
            Status.FAIL,
            "no nvidia-container-runtime-hook on this host and no nvidia runtime in the engine: the client's "
            "--gpus all (device request) would be refused ('could not select device driver')",
        ),
    ],
    ids=["runtime-and-hook", "hook-only", "runtime-only", "neither"],
)
def test_gpu_access_is_judged_by_what_the_device_request_needs(
    world: World, listed: bool, hook: str | None, status: Status, detail: str
) -> None:
    world.engine = FakeEngine(nvidia=listed)
    world.hook = hook
    checks = world.doctor()
    check = checks["gpu access"]
    assert (check.status, check.detail) == (status, detail)
    assert check.fix == (None if status == Status.OK else FIX)
    assert exit_code(world.checks) == (1 if status == Status.FAIL else 0)


def test_gpu_access_is_not_needed_with_no_gpus(world: World) -> None:
    world.engine = FakeEngine(nvidia=False)
    world.hook = None
    check = world.doctor(gpus=False)["gpu access"]
    assert (check.status, check.detail) == (
        Status.OK,
        "not needed: --no-gpus (the client container asks for no GPUs)",
    )


def test_the_engine_line_shows_the_negotiated_api_version(world: World) -> None:
    assert world.doctor()["docker"].detail == "Docker 27.1.0 (Docker API 1.45)"


def test_a_podman_engine_is_named_and_its_gpus_need_a_cdi_spec_not_the_docker_hook(world: World) -> None:
    world.engine = FakeEngine(nvidia=False, kind="podman")
    world.hook = None  # the Docker hook is irrelevant on Podman
    world.cdi = None
    checks = world.doctor()
    assert checks["docker"].detail == "Podman 27.1.0 (Docker API 1.45)"
    check = checks["gpu access"]
    assert check.status == Status.FAIL
    assert check.detail == (
        "no CDI spec in /etc/cdi or /var/run/cdi: Podman cannot resolve nvidia.com/gpu=all, and the client "
        "container's start would be refused ('unresolvable CDI devices')"
    )
    assert check.fix == (
        "install the NVIDIA Container Toolkit and generate its CDI spec with "
        "'nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml'"
    )
    world.cdi = "/etc/cdi/nvidia.yaml"
    check = world.doctor()["gpu access"]
    assert (check.status, check.detail) == (
        Status.OK,
        "CDI device nvidia.com/gpu=all (Podman) via /etc/cdi/nvidia.yaml",
    )
    assert world.doctor(gpus=False)["gpu access"].status == Status.OK


def test_the_process_runtime_checks_the_installed_client_torch_and_cuda_instead_of_an_engine(
    world: World,
) -> None:
    world.engine = None  # no engine on this host: no check may need one
    world.client = ClientProbe("1", "2.13.0+cu128", 8, "12.8")
    checks = world.doctor(runtime="process")
    assert "docker" not in checks and "image" not in checks and "disk" not in checks
    assert (checks["client"].status, checks["client"].detail) == (
        Status.OK,
        "psyche-run-manager[client] 1 (python -m psyche.client)",
    )
    assert (checks["torch"].status, checks["torch"].detail) == (
        Status.OK,
        "torch 2.13.0+cu128 (CUDA 12.8), 8 CUDA device(s) visible",
    )
    assert checks["client version"] == Check("client version", Status.OK, "'v1' is the installed 1")
    world.client = ClientProbe("0.2.0", "2.13.0+cpu", 0, None)
    checks = world.doctor(runtime="process")
    assert checks["torch"].status == Status.FAIL
    assert checks["torch"].detail == (
        "torch 2.13.0+cpu (a CPU build), 0 CUDA device(s) visible: the client would train on the CPU"
    )
    assert checks["client version"] == Check(
        "client version",
        Status.FAIL,
        "the run wants client_version 'v1' but psyche-run-manager[client] 0.2.0 is installed: "
        "pip install 'psyche-run-manager[client]==1'",
        "pip install 'psyche-run-manager[client]==1'",
    )
    assert world.doctor(runtime="process", gpus=False)["torch"].status == Status.OK
    world.client = ClientProbe(None)
    checks = world.doctor(runtime="process")
    assert checks["client"].status == Status.FAIL and checks["torch"].status == Status.SKIP


def test_no_gpu_fails_unless_no_gpus(world: World) -> None:
    world.gpus = GpuProbe((), "no NVIDIA GPU visible (nvidia-smi is not installed)")
    checks = world.doctor()
    assert checks["gpus"].status == Status.FAIL
    assert checks["gpus"].detail.startswith("no NVIDIA GPU visible (nvidia-smi is not installed)")
    assert checks["parallelism"].status == Status.SKIP
    assert world.doctor(gpus=False)["gpus"].status == Status.WARN


def test_parallelism_auto_without_an_entry_fails(world: World) -> None:
    world.gpus = GpuProbe((H100,) * 2)
    check = world.doctor()["parallelism"]
    assert check.status == Status.FAIL
    # The client's own lookup and message (psyche.parallelism_table), so the two agree.
    assert check.detail == (
        "PARALLELISM_AUTO: no config for 2 x H100 with model 'org/model' (table has H100: 1, 8 GPUs)"
    )
    assert (
        check.fix
        == "set PARALLELISM_AUTO=false with DATA_PARALLELISM, TENSOR_PARALLELISM and MICRO_BATCH_SIZE"
    )
    world.gpus = GpuProbe((Gpu("NVIDIA A100-SXM4-80GB", 81920, "550"),))
    assert world.doctor()["parallelism"].detail == (
        "PARALLELISM_AUTO: GPU 'A100-80GB' not in parallelism table for model 'org/model' "
        "(table has H100: 1, 8 GPUs)"
    )


def test_parallelism_auto_looks_up_the_runs_model(world: World) -> None:
    seed_run(world.chain, model=dataclasses.replace(RUN_MODEL, checkpoint=Checkpoint.hub("org/other")))
    check = world.doctor()["parallelism"]
    assert check.status == Status.FAIL
    assert check.detail.startswith(
        "PARALLELISM_AUTO: model 'org/other' not in parallelism table (table has org/model)"
    )
    seed_run(world.chain)  # a fresh account: an Ephemeral checkpoint names no model
    assert "names no model to look up" in world.doctor()["parallelism"].detail


def test_parallelism_auto_agrees_with_the_bundled_table(world: World) -> None:
    seed_run(
        world.chain,
        model=dataclasses.replace(RUN_MODEL, checkpoint=Checkpoint.hub("NousResearch/Meta-Llama-3.1-8B")),
    )
    world.gpus = GpuProbe((Gpu("NVIDIA A100-SXM4", 81920, "550"),) * 8)  # 80 GB told by memory, not name
    checks = run_doctor(world.seams(load_parallelism_table), DoctorOptions())
    check = next(c for c in checks if c.name == "parallelism")
    assert check.detail == (
        "PARALLELISM_AUTO: NousResearch/Meta-Llama-3.1-8B on 8 x A100-80GB -> dp=2 tp=4 micro_batch_size=4"
    )


def test_parallelism_auto_with_manual_values_warns_they_are_ignored(world: World) -> None:
    world.env["DATA_PARALLELISM"] = "2"
    assert world.doctor()["parallelism"].status == Status.WARN


@pytest.mark.parametrize(
    ("dp", "tp", "status"), [("4", "4", Status.FAIL), ("2", "2", Status.WARN), ("4", "2", Status.OK)]
)
def test_manual_parallelism_against_gpu_count(world: World, dp: str, tp: str, status: Status) -> None:
    world.env |= {"PARALLELISM_AUTO": "false", "DATA_PARALLELISM": dp, "TENSOR_PARALLELISM": tp}
    check = world.doctor()["parallelism"]
    assert check.status == status
    assert check.detail.startswith(
        f"DATA_PARALLELISM*TENSOR_PARALLELISM = {dp}*{tp} = {int(dp) * int(tp)}, 8 GPU(s)"
    )


@pytest.mark.parametrize(
    ("free", "status"), [(10 * GIB, Status.FAIL), (30 * GIB, Status.WARN), (50 * GIB, Status.OK)]
)
def test_disk_room_for_the_image(world: World, free: int, status: Status) -> None:
    world.free["/var/lib/docker"] = free
    check = world.doctor()["disk"]
    assert check.status == status
    assert check.detail.startswith(f"{free / GIB:.1f} GiB free under /var/lib/docker")


def test_disk_of_a_remote_engine_warns_and_a_present_image_needs_none(world: World) -> None:
    world.engine = FakeEngine(root="/elsewhere")
    assert world.doctor()["disk"].status == Status.WARN
    world.engine = FakeEngine(images=("nousresearch/psyche-client:v1",))
    world.free["/var/lib/docker"] = GIB
    assert world.doctor()["disk"].status == Status.OK


def test_shm_reports_container_and_host(world: World) -> None:
    check = world.doctor()["shm"]
    assert (check.status, check.detail) == (Status.OK, "container --shm-size 1g; host /dev/shm 16.0 GiB")
    assert world.doctor(container_shm="32g")["shm"].status == Status.WARN


def test_container_shm_default_matches_the_launch_config() -> None:
    assert DoctorOptions().container_shm == LaunchConfig(run_id="x").shm_size
    assert [parse_size(s) for s in ("1g", "512m", "64k", "1024")] == [GIB, 512 * 2**20, 65536, 1024]


def test_render_prints_fixes_under_non_ok_lines_and_a_summary() -> None:
    ui, out, _ = UI.for_tests()
    checks = [Check("env", Status.OK, "fine", "unused"), Check("gpus", Status.FAIL, "none", "install")]
    render(ui, checks)
    assert out.getvalue().splitlines() == [
        "OK    env   fine",
        "FAIL  gpus  none",
        "            fix: install",
        "doctor: 1 OK, 1 FAIL",
    ]
    assert summary(checks) == "1 OK, 1 FAIL"


def test_json_report(world: World) -> None:
    world.dead.add(RPC1)
    world.doctor()
    body = json.loads(report_json(world.checks, exit_code(world.checks)))
    assert (body["ok"], body["exit_code"], body["counts"]["FAIL"]) == (False, 1, 1)
    assert body["checks"][3] == {
        "name": "RPC",
        "status": "FAIL",
        "detail": f"{RPC1} did not answer: ConnectError: [Errno 111] Connection refused",
        "fix": "check RPC in the environment: URL, API key, and that the node is up",
    }


def test_report_never_shows_the_key(world: World) -> None:
    del world.env["WALLET_PRIVATE_KEY_PATH"]
    world.env["RAW_WALLET_PRIVATE_KEY"] = KEY_JSON
    world.doctor()
    console = Console(file=io.StringIO(), width=100, color_system=None)
    text = report_json(world.checks, 0) + repr(world.checks)
    console.print(text)
    assert KEY_JSON not in text


# -- hardware probes ----------------------------------------------------------------------------------


def test_parse_nvidia_smi_rows() -> None:
    text = "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\nNVIDIA H200, [N/A], 560.1\n\n"
    assert parse_nvidia_smi(text) == (H100, Gpu("NVIDIA H200", None, "560.1"))


def test_probe_gpus_without_nvidia_smi_or_when_it_fails() -> None:
    assert probe_gpus(which=lambda _: None).problem == "no NVIDIA GPU visible (nvidia-smi is not installed)"
    failed = probe_gpus(
        which=lambda _: "/usr/bin/nvidia-smi", run=lambda argv, t: (9, "", "NVML: Driver Not Loaded\n")
    )
    assert failed.problem == "no NVIDIA GPU visible (nvidia-smi: NVML: Driver Not Loaded)"
    seen: list[Sequence[str]] = []

    def run(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        seen.append(argv)
        return 0, "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\n", ""

    assert probe_gpus(which=lambda _: "/x/nvidia-smi", run=run).gpus == (H100,)
    assert seen == [
        ["/x/nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    ]


def test_bundled_parallelism_table_is_read_without_torch() -> None:
    table = load_parallelism_table()
    assert table["TinyLlama/TinyLlama-1.1B-Chat-v0.4"]["H100"][8] == TableRow(8, 1, 8)
    assert normalise_gpu_name("NVIDIA H200 141GB HBM3e") == "H200"
    assert normalise_gpu_name(" Tesla T4 ") == "Tesla T4"


def test_settings_type_is_what_the_doctor_gets(world: World) -> None:
    assert isinstance(world.seams().settings(), Settings)
    assert isinstance(load_wallet(world.seams().settings()), Wallet)


def test_the_nvidia_hook_is_looked_for_on_path_then_in_the_usual_bin_dirs() -> None:
    asked: list[tuple[str, str | None]] = []

    def which(name: str, path: str | None = None) -> str | None:
        asked.append((name, path))
        return "/usr/sbin/nvidia-container-toolkit" if name == "nvidia-container-toolkit" and path else None

    assert find_nvidia_hook(which) == "/usr/sbin/nvidia-container-toolkit"
    assert asked[:2] == [
        ("nvidia-container-runtime-hook", None),
        ("nvidia-container-runtime-hook", "/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin"),
    ]
    assert find_nvidia_hook(lambda name, path=None: None) is None
