"""The trainer's settings: the environment parsed into a frozen TrainerEnv; the run's model mapped to a
TrainerConfig and a ModelSource (a preset, or a local Hugging Face directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    CheckpointKind,
    ConstantLR,
    Distro,
    DummyOptimizer,
    HubRepo,
    LearningRateSchedule,
)
from psyche.env_contract import ClientEnvVars
from psyche.errors import ConfigError

DeviceName = str  # "auto", "cpu", "cuda" or "cuda:N"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
SCRATCH = Path("/scratch")


class EnvVars:
    """Every variable the trainer reads (the contract's names where it has one, section 3.2)."""

    DATA_PARALLELISM = ClientEnvVars.DATA_PARALLELISM
    TENSOR_PARALLELISM = ClientEnvVars.TENSOR_PARALLELISM
    MICRO_BATCH_SIZE = ClientEnvVars.MICRO_BATCH_SIZE
    PARALLELISM_AUTO = ClientEnvVars.PARALLELISM_AUTO
    PARALLELISM_TABLE = "PARALLELISM_TABLE"  # ours: a JSON file replacing the bundled table
    CHECKPOINT_DIR = "CHECKPOINT_DIR"
    MODEL_PRESET = "MODEL_PRESET"  # ours: decoder size for Dummy checkpoints
    MODEL_DIR = "MODEL_DIR"  # ours: a folder of <org>/<name> Hugging Face model directories
    HF_HUB_CACHE = "HF_HUB_CACHE"
    HF_HOME = "HF_HOME"
    DEVICE = "DEVICE"
    TORCH_COMPILE = "TORCH_COMPILE"


@dataclass(frozen=True, slots=True)
class TrainerEnv:
    """What the environment says about training; parse with ``load_trainer_env``."""

    data_parallelism: int = 1
    tensor_parallelism: int = 1
    micro_batch_size: int = 1
    parallelism_auto: bool = False
    parallelism_table: Path | None = None
    checkpoint_dir: Path | None = None
    model_preset: str = "tiny"
    model_dirs: tuple[Path, ...] = ()
    device: DeviceName = "auto"
    compile: bool = False


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip().strip('"')
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: not an integer: {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name}: must be at least 1, got {value}")
    return value


def _bool(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().strip('"').lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _device(raw: str) -> DeviceName:
    value = raw.strip().lower() or "auto"
    head, _, index = value.partition(":")
    if value in {"auto", "cpu", "cuda"} or (head == "cuda" and index.isdigit()):
        return value
    raise ConfigError(f"{EnvVars.DEVICE}: expected auto, cpu, cuda or cuda:N, got {raw!r}")


def _hf_cache(environ: Mapping[str, str]) -> Path:
    if environ.get(EnvVars.HF_HUB_CACHE):
        return Path(environ[EnvVars.HF_HUB_CACHE])
    home = environ.get(EnvVars.HF_HOME) or str(Path(environ.get("HOME", "/root")) / ".cache" / "huggingface")
    return Path(home) / "hub"


def load_trainer_env(environ: Mapping[str, str] | None = None, *, scratch: Path = SCRATCH) -> TrainerEnv:
    """Parse the trainer's variables; a missing or bad value is a one-line ConfigError naming it.

    The checkpoint directory is ``CHECKPOINT_DIR``, else ``scratch`` when it is a mounted directory (the
    run-manager mounts ``SCRATCH_DIR`` there), else none (no checkpoints)."""
    env = os.environ if environ is None else environ
    table = env.get(EnvVars.PARALLELISM_TABLE, "").strip()
    if table and not Path(table).is_file():
        raise ConfigError(f"{EnvVars.PARALLELISM_TABLE}: no such file: {table}")
    ckpt_raw = env.get(EnvVars.CHECKPOINT_DIR, "").strip()
    checkpoint_dir = Path(ckpt_raw) if ckpt_raw else (scratch if scratch.is_dir() else None)
    model_dirs = [Path(p) for p in env.get(EnvVars.MODEL_DIR, "").split(os.pathsep) if p.strip()]
    preset = env.get(EnvVars.MODEL_PRESET, "").strip() or "tiny"
    from psyche.client.model import PRESETS  # torch is a dependency of this package, not of the parse

    if preset not in PRESETS:
        raise ConfigError(
            f"{EnvVars.MODEL_PRESET}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
        )
    return TrainerEnv(
        data_parallelism=_int(env, EnvVars.DATA_PARALLELISM, 1),
        tensor_parallelism=_int(env, EnvVars.TENSOR_PARALLELISM, 1),
        micro_batch_size=_int(env, EnvVars.MICRO_BATCH_SIZE, 1),
        parallelism_auto=_bool(env, EnvVars.PARALLELISM_AUTO),
        parallelism_table=Path(table) if table else None,
        checkpoint_dir=checkpoint_dir,
        model_preset=preset,
        model_dirs=(*model_dirs, _hf_cache(env)),
        device=_device(env.get(EnvVars.DEVICE, "")),
        compile=_bool(env, EnvVars.TORCH_COMPILE),
    )


# ---------------------------------------------------------------- from the run's model to the trainer


@dataclass(frozen=True, slots=True)
class OptimizerSettings:
    """The run's optimizer: AdamW hyper-parameters, or ``distro`` (the run's Distro settings) when the run
    trains with DisTrO (psyche.client.distro; weight_decay and clip_grad_norm then come from it too)."""

    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    distro: Distro | None = None

    @classmethod
    def from_run(cls, optimizer: AdamW | Distro | DummyOptimizer) -> OptimizerSettings:
        """The trainer's optimizer settings for the run's optimizer.

        Raises:
            ConfigError: the run's optimizer is Dummy, which cannot train.
        """
        if isinstance(optimizer, AdamW):
            return cls(
                (optimizer.betas[0], optimizer.betas[1]),
                optimizer.eps,
                optimizer.weight_decay,
                optimizer.clip_grad_norm,
            )
        if isinstance(optimizer, Distro):
            return cls(
                weight_decay=optimizer.weight_decay or 0.0,
                clip_grad_norm=optimizer.clip_grad_norm,
                distro=optimizer,
            )
        raise ConfigError("model.optimizer: the Dummy optimizer cannot train (the run config must set one)")


@dataclass(frozen=True, slots=True)
class TrainerConfig:
    """Everything the Trainer needs besides the model shape and the seed."""

    micro_batch_size: int = 1
    data_parallelism: int = 1
    tensor_parallelism: int = 1
    device: DeviceName = "cpu"
    compile: bool = False
    lr_schedule: LearningRateSchedule = field(default_factory=lambda: ConstantLR(1e-3, 1e-3, 0))
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the model's shape and initial weights come from: a preset initialised from the seed, a local HF
    directory, or (a Hub repo that is not on disk) the client's own current checkpoint, which the trainer then
    resumes."""

    kind: Literal["preset", "hf_dir", "checkpoint"]
    preset: str = "tiny"
    directory: Path | None = None


def hub_directory(repo: HubRepo, roots: tuple[Path, ...]) -> Path | None:
    """A local directory holding ``repo`` with a config.json and safetensors, or None.

    Looks at ``<root>/<org>/<name>`` (a plain download) and the Hugging Face cache layout
    ``<root>/models--<org>--<name>/snapshots/<revision or refs/main>``."""
    for root in roots:
        candidates = [root / repo.repo_id]
        cache = root / ("models--" + repo.repo_id.replace("/", "--"))
        revision = repo.revision
        if revision is None and (cache / "refs" / "main").is_file():
            revision = (cache / "refs" / "main").read_text().strip()
        if revision is not None:
            ref = cache / "refs" / revision
            candidates.append(cache / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision))
        for path in candidates:
            if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
                return path
    return None


def model_source(model: LLM, env: TrainerEnv, resume: Path | None = None) -> ModelSource:
    """Map the run's checkpoint to initial weights; no download ever happens at run time. ``resume`` is the
    current local checkpoint the trainer will resume, if any: it serves a Hub repo that is not on disk.

    Raises:
        ConfigError: a checkpoint kind the client does not load, or a Hub repo that is neither on disk nor
            served by ``resume`` (the message says where to put it).
    """
    cp = model.checkpoint
    if cp.kind is CheckpointKind.Dummy:
        return ModelSource("preset", preset=env.model_preset)
    if cp.kind in (CheckpointKind.Hub, CheckpointKind.P2P) and isinstance(cp.repo, HubRepo):
        found = hub_directory(cp.repo, env.model_dirs)
        if found is None and resume is not None:
            return ModelSource("checkpoint", directory=resume)
        if found is None:
            where = ", ".join(str(r) for r in env.model_dirs)
            raise ConfigError(
                f"model.checkpoint: Hub repo {cp.repo.repo_id!r} is not available offline; put it under "
                f"{EnvVars.MODEL_DIR} as <org>/<name> with config.json and *.safetensors (looked in: {where})"
            )
        return ModelSource("hf_dir", directory=found)
    raise ConfigError(
        f"model.checkpoint: {cp.kind.name} checkpoints are not supported by the reference client"
    )


def trainer_config(
    model: LLM, env: TrainerEnv, *, dp: int, tp: int, micro_batch_size: int, device: DeviceName
) -> TrainerConfig:
    """The TrainerConfig for the run's model with the resolved parallelism and device.

    Raises:
        ConfigError: ``max_seq_len`` is not positive, or the optimizer is Dummy.
    """
    if model.max_seq_len <= 0:
        raise ConfigError("model.max_seq_len: must be positive")
    return TrainerConfig(
        micro_batch_size=micro_batch_size,
        data_parallelism=dp,
        tensor_parallelism=tp,
        device=device,
        compile=env.compile,
        lr_schedule=model.lr_schedule,
        optimizer=OptimizerSettings.from_run(model.optimizer),
    )
