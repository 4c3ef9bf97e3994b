"""The doctor's engine and host checks: Docker and GPU access, GPUs, parallelism, disk and shm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from psyche.errors import RunManagerError
from psyche.manager.doctor_report import Check, DoctorOptions, EngineProbe, Status, skip
from psyche.manager.engines import parse_size
from psyche.manager.hardware import DiskUsage, GpuProbe
from psyche.parallelism_table import Table as ParallelismTable
from psyche.parallelism_table import lookup, model_key, normalise_gpu_name

if TYPE_CHECKING:
    from psyche.chain.accounts.model import LLM
    from psyche.chain.queries import Run
    from psyche.manager.procruntime import ClientProbe
    from psyche.manager.settings import Settings

GIB = 2**30


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check_engine(
    connect: Callable[[], EngineProbe],
    nvidia_hook: Callable[[], str | None],
    need_gpus: bool = True,
    cdi_spec: Callable[[], str | None] = lambda: None,
) -> tuple[list[Check], EngineProbe | None]:
    """The engine answers: Docker or Podman, its version and the negotiated API; the GPU access it needs."""
    try:
        engine = connect()
        engine.version()
        found = engine.engine()
        api = engine.api_version()
    except RunManagerError as err:
        return [Check("docker", Status.FAIL, err.message, err.hint), skip("gpu access", "docker")], None
    checks = [Check("docker", Status.OK, found.describe(api))]
    if found.kind == "podman":
        checks.append(check_cdi(cdi_spec, need_gpus))
    else:
        checks.append(check_gpu_access(engine, nvidia_hook, need_gpus))
    return checks, engine


def check_cdi(cdi_spec: Callable[[], str | None], need_gpus: bool) -> Check:
    """Podman gives GPUs through CDI: a spec naming nvidia.com/gpu=all in /etc/cdi or /var/run/cdi."""
    from psyche.manager.engines import CDI_GPU_DEVICE, CDI_SPEC_DIRS
    from psyche.manager.runtime import GPU_MISSING_PODMAN

    name = "gpu access"
    if not need_gpus:
        return Check(name, Status.OK, "not needed: --no-gpus (the client container asks for no GPUs)")
    spec = cdi_spec()
    if spec is None:
        detail = (
            f"no CDI spec in {' or '.join(CDI_SPEC_DIRS)}: Podman cannot resolve {CDI_GPU_DEVICE}, and the "
            "client container's start would be refused ('unresolvable CDI devices')"
        )
        return Check(name, Status.FAIL, detail, GPU_MISSING_PODMAN.split(": ", 1)[1])
    return Check(name, Status.OK, f"CDI device {CDI_GPU_DEVICE} (Podman) via {spec}")


def check_gpu_access(engine: EngineProbe, nvidia_hook: Callable[[], str | None], need_gpus: bool) -> Check:
    """What the main job needs for GPUs: Docker's device request (--gpus all), served by the NVIDIA
    Container Toolkit's hook. An ``nvidia`` runtime entry in ``docker info`` is not needed (never used)."""
    from psyche.manager.runtime import GPU_MISSING

    name = "gpu access"
    if not need_gpus:
        return Check(name, Status.OK, "not needed: --no-gpus (the client container asks for no GPUs)")
    fix = GPU_MISSING.split(": ", 1)[1]
    try:
        listed = engine.has_nvidia_runtime()
    except RunManagerError as err:
        return Check(name, Status.FAIL, f"cannot ask the engine: {err.message}", err.hint)
    entry = "nvidia runtime listed" if listed else "no nvidia runtime entry (not needed)"
    hook = nvidia_hook()
    if hook is not None:
        return Check(name, Status.OK, f"--gpus all (device request) via {hook}; {entry}")
    if listed:
        detail = (
            "the engine lists the nvidia runtime, but no nvidia-container-runtime-hook is on this host: "
            "the client's --gpus all (device request) may be refused"
        )
        return Check(name, Status.WARN, detail, fix)
    detail = (
        "no nvidia-container-runtime-hook on this host and no nvidia runtime in the engine: the client's "
        "--gpus all (device request) would be refused ('could not select device driver')"
    )
    return Check(name, Status.FAIL, detail, fix)


def check_client(probe: ClientProbe, need_gpus: bool) -> tuple[list[Check], None]:
    """--runtime process: the installed client and the torch it runs on, and whether torch sees the GPUs."""
    from psyche.manager.clientpkg import REQUIREMENT

    if probe.installed is None:
        fix = f"pip install '{REQUIREMENT}' (the version the run's client_version names)"
        return [
            Check("client", Status.FAIL, f"{REQUIREMENT} is not installed in this Python", fix),
            skip("torch", "the client"),
        ], None
    checks = [Check("client", Status.OK, f"{REQUIREMENT} {probe.installed} (python -m psyche.client)")]
    if probe.torch is None:
        fix = f"reinstall {REQUIREMENT}=={probe.installed} (its client extra brings torch)"
        checks.append(Check("torch", Status.FAIL, probe.problem or "torch is missing", fix))
        return checks, None
    build = f"CUDA {probe.cuda}" if probe.cuda else "a CPU build"
    detail = f"torch {probe.torch} ({build}), {probe.cuda_devices} CUDA device(s) visible"
    if probe.cuda_devices == 0 and need_gpus:
        fix = (
            "install torch built for your CUDA driver (pip install torch --index-url "
            "https://download.pytorch.org/whl/cu128, say), check nvidia-smi, or pass --no-gpus"
        )
        checks.append(Check("torch", Status.FAIL, f"{detail}: the client would train on the CPU", fix))
    else:
        checks.append(Check("torch", Status.OK, detail))
    return checks, None


def check_client_version(run: Run, probe: ClientProbe) -> Check:
    """--runtime process: the run's client_version is the installed client's version."""
    from psyche.manager.clientpkg import require_installed

    try:
        installed = require_installed(run.client_version, probe.installed)
    except RunManagerError as err:
        text = err.message
        fix = err.hint or (text.rsplit(": ", 1)[1] if "pip install" in text else None)
        return Check("client version", Status.FAIL, text, fix)
    return Check("client version", Status.OK, f"{run.client_version!r} is the installed {installed}")


def check_wallet_key(run: Run | None, engine: EngineProbe | None, options: DoctorOptions) -> Check:
    """How the container will get the wallet key (--wallet-key-via; for auto, the run's image's label)."""
    from psyche.manager.images import image_for_version
    from psyche.manager.launch import KEY_FILE_LABEL, KEY_FILE_TARGET, key_delivery

    as_file = f"a read-only file ({KEY_FILE_TARGET}) on a tmpfs mount, not in the container's environment"
    as_env = "RAW_WALLET_PRIVATE_KEY in the container's environment (docker inspect shows it)"
    via = options.wallet_key_via
    if via == "env":
        return Check("wallet key", Status.OK, f"{as_env}: --wallet-key-via env")
    if not options.local_engine:
        if via == "file":
            fix = "run on the engine's host, or use --wallet-key-via env"
            return Check(
                "wallet key", Status.FAIL, "a key file needs the engine on this machine (DOCKER_HOST)", fix
            )
        return Check("wallet key", Status.OK, f"{as_env}: the engine is not on this machine")
    if via == "file":
        return Check("wallet key", Status.OK, f"{as_file}: --wallet-key-via file")
    undecided = f"a read-only tmpfs file if the image has the label {KEY_FILE_LABEL}=1, else the environment"
    if run is None or engine is None:
        return Check("wallet key", Status.OK, f"decided at start: {undecided}")
    kwargs = {} if options.repository is None else {"repository": options.repository}
    try:
        image = image_for_version(run.client_version, local=options.local, **kwargs).reference
        labels = engine.image_labels(image) if engine.image_exists(image) else None
    except RunManagerError:
        return Check("wallet key", Status.OK, f"decided at start: {undecided}")
    if labels is None:
        return Check("wallet key", Status.OK, f"decided after the pull of {image}: {undecided}")
    if key_delivery("auto", labels) == "file":
        return Check("wallet key", Status.OK, f"{as_file}: {image} has {KEY_FILE_LABEL}=1")
    return Check("wallet key", Status.OK, f"{as_env}: {image} has no {KEY_FILE_LABEL} label")


def check_gpus(probe: GpuProbe, need_gpus: bool = True) -> Check:
    """GPUs are visible: FAIL without any when the client container requests them (the default)."""
    if not probe.gpus:
        fix = "install the NVIDIA driver and check that nvidia-smi lists the GPUs"
        if not need_gpus:
            return Check("gpus", Status.WARN, f"{probe.problem}; --no-gpus: the client runs on the CPU", fix)
        return Check("gpus", Status.FAIL, f"{probe.problem}; the client container requests every GPU", fix)
    kinds: dict[str, int] = {}
    for g in probe.gpus:  # identical GPUs are one entry: "8 x NVIDIA H100 ..."
        kind = f"{g.name} ({'?' if g.memory_mib is None else g.memory_mib} MiB, driver {g.driver})"
        kinds[kind] = kinds.get(kind, 0) + 1
    return Check("gpus", Status.OK, "; ".join(f"{n} x {kind}" for kind, n in kinds.items()))


def check_parallelism(
    settings: Settings, probe: GpuProbe, table: Callable[[], ParallelismTable], model: LLM | None
) -> Check:
    """PARALLELISM_AUTO has an entry for the run's ``model`` on this GPU and count (the client's own lookup),
    or DATA*TENSOR_PARALLELISM fits the GPU count."""
    if not probe.gpus:
        return skip("parallelism", "visible GPUs")
    count = probe.count
    if settings.parallelism_auto:
        if model is None:
            return skip("parallelism", "the run (PARALLELISM_AUTO looks up its model)")
        first = probe.gpus[0]
        gpu = normalise_gpu_name(first.name, first.memory_mib)
        fix = "set PARALLELISM_AUTO=false with DATA_PARALLELISM, TENSOR_PARALLELISM and MICRO_BATCH_SIZE"
        try:
            key = model_key(model)
            row = lookup(table(), key, gpu, count)
        except RunManagerError as err:
            return Check("parallelism", Status.FAIL, err.message, err.hint or fix)
        detail = (
            f"PARALLELISM_AUTO: {key} on {count} x {gpu} -> dp={row.dp} tp={row.tp} "
            f"micro_batch_size={row.micro_batch_size}"
        )
        if settings.data_parallelism or settings.tensor_parallelism or settings.micro_batch_size:
            return Check("parallelism", Status.WARN, detail + "; the manual values are ignored", fix)
        return Check("parallelism", Status.OK, detail)
    dp, tp = settings.data_parallelism or 1, settings.tensor_parallelism or 1
    detail = f"DATA_PARALLELISM*TENSOR_PARALLELISM = {dp}*{tp} = {dp * tp}, {count} GPU(s) visible"
    if dp * tp > count:
        fix = f"make DATA_PARALLELISM*TENSOR_PARALLELISM at most {count}, or set PARALLELISM_AUTO=true"
        return Check("parallelism", Status.FAIL, detail, fix)
    if dp * tp < count:
        fix = "raise DATA_PARALLELISM (or TENSOR_PARALLELISM), or set PARALLELISM_AUTO=true"
        return Check("parallelism", Status.WARN, f"{detail}: {count - dp * tp} would sit idle", fix)
    return Check("parallelism", Status.OK, detail)


def check_disk(
    engine: EngineProbe | None, image_present: bool, usage: Callable[[Path], DiskUsage], need: int
) -> Check:
    """The engine's data root has room for the client image."""
    if engine is None:
        return skip("disk", "docker")
    try:
        root = engine.data_root()
    except RunManagerError as err:
        return Check("disk", Status.WARN, f"cannot ask the engine for its data root: {err.message}")
    if root is None:
        return Check("disk", Status.WARN, "the engine did not say where it keeps images")
    try:
        free = usage(Path(root)).free
    except OSError as exc:
        return Check("disk", Status.WARN, f"{root} is not visible from here ({exc.strerror}): remote engine?")
    detail = f"{_size(free)} free under {root}"
    fix = f"free space under {root} (docker system prune, docker image prune -a)"
    if image_present:
        return Check("disk", Status.OK, f"{detail}; the image is already there")
    if free < need:
        return Check("disk", Status.FAIL, f"{detail}: the client image needs about {_size(need)}", fix)
    if free < 2 * need:
        return Check("disk", Status.WARN, f"{detail}: little room beyond one {_size(need)} image", fix)
    return Check("disk", Status.OK, detail)


def check_shm(usage: Callable[[Path], DiskUsage], container_shm: str) -> Check:
    """The shared memory the client container gets (--shm-size), next to the host's /dev/shm."""
    want = parse_size(container_shm)
    try:
        host = usage(Path("/dev/shm")).total
    except OSError:
        return Check(
            "shm", Status.WARN, f"container --shm-size {container_shm}; host has no /dev/shm to compare"
        )
    detail = f"container --shm-size {container_shm}; host /dev/shm {_size(host)}"
    if host < want:
        fix = "shared memory is RAM-backed: give the host more /dev/shm (mount -o remount,size=...)"
        return Check("shm", Status.WARN, f"{detail}: the host's is smaller than the container's", fix)
    return Check("shm", Status.OK, detail)
