"""Trainer checkpoints on disk: atomic write of safetensors files plus a meta.json manifest with their sha256,
discovery of the newest complete one (a partial or corrupt directory is skipped with a warning), and the
choice of the one a restarted client resumes from (``current_checkpoint``).

Layout: ``<root>/epoch-<EEEEEE>-step-<SSSSSSSS>/`` holding ``model.safetensors`` (full weights, Hugging Face
LLaMA names), ``optimizer.safetensors`` (AdamW moments), ``config.json`` (HF model config) and, written last,
``meta.json`` ({format, run_id, epoch, step, trainer_step, spec, files: {name: {sha256, size}}}). The client
keeps each run's checkpoints in a directory of their own, ``run_root(checkpoint dir, run_id)``. A directory is
built under a ``.tmp-`` name and renamed into place, so a crash never leaves a half-written final name;
a final directory whose manifest or hashes do not match is treated as corrupt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger("psyche.client")

FORMAT = 1
META = "meta.json"
_NAME = re.compile(r"^epoch-(\d{6,})-step-(\d{8,})$")
_PLAIN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CorruptCheckpoint(Exception):
    """A checkpoint directory that must not be loaded; internal to this module's discovery."""


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A validated checkpoint directory and its manifest."""

    path: Path
    epoch: int
    step: int
    meta: dict[str, Any]

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of ``<name>.safetensors`` (CPU).

        Raises:
            CorruptCheckpoint: the file is missing or not safetensors.
        """
        try:
            return load_file(str(self.path / f"{name}.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise CorruptCheckpoint(f"{self.path}: {name}.safetensors: {exc}") from exc


def dir_name(epoch: int, step: int) -> str:
    """The directory name of a checkpoint, ``epoch-NNNNNN-step-NNNNNNNN`` (sorts by epoch, then step)."""
    return f"epoch-{epoch:06d}-step-{step:08d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(
    root: Path,
    epoch: int,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    meta: dict[str, Any],
    *,
    extra_json: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``tensors`` (file stem -> name -> tensor) and ``extra_json`` (file name -> object) as one
    checkpoint, atomically; keep the ``keep`` newest checkpoints and delete older ones."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / dir_name(epoch, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files: dict[str, dict[str, Any]] = {}
    for stem, named in tensors.items():
        path = tmp / f"{stem}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in named.items()}, str(path))
        files[path.name] = {"sha256": _sha256(path), "size": path.stat().st_size}
        _fsync(path)
    for file_name, obj in (extra_json or {}).items():
        (tmp / file_name).write_text(json.dumps(obj, indent=2))
    manifest = {**meta, "format": FORMAT, "epoch": epoch, "step": step, "files": files}
    (tmp / META).write_text(json.dumps(manifest, indent=2))
    _fsync(tmp / META)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass(frozen=True, slots=True)
class Content:
    """What one checkpoint holds: tensors (file stem -> name -> tensor), manifest fields and JSON files.

    Two clients holding the same Content write byte-identical checkpoints; DisTrO clients serve it to the
    next epoch's joiners, who write it as their own (``write_content``)."""

    tensors: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any]
    extra_json: dict[str, Any]


def write_content(root: Path, epoch: int, step: int, content: Content, *, keep: int = 2) -> Path:
    """``write_checkpoint`` of ``content``."""
    return write_checkpoint(
        root, epoch, step, content.tensors, content.meta, extra_json=content.extra_json, keep=keep
    )


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under ``root``, oldest first (by epoch, then step)."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), int(m.group(2)), p))
    return [p for _, _, p in sorted(found)]


def run_root(root: Path, run_id: str) -> Path:
    """Where the client keeps ``run_id``'s checkpoints under the checkpoint directory ``root``: the run id as
    the folder name when it is a plain file name, else ``run-<sha256 of it, 16 hex>``."""
    plain = _PLAIN.match(run_id) is not None and run_id not in {".", ".."}
    return root / (run_id if plain else "run-" + hashlib.sha256(run_id.encode()).hexdigest()[:16])


def read_info(path: Path) -> CheckpointInfo:
    """The checkpoint at ``path`` from its manifest alone (no hashing: for a directory already validated)."""
    meta = _manifest(path)
    return CheckpointInfo(path, int(meta["epoch"]), int(meta["step"]), meta)


def _manifest(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: no {META} (an interrupted write)") from None
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"{path}: unreadable {META}: {exc}") from exc
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or not isinstance(meta.get("files"), dict)
        or not all(isinstance(meta.get(key), int) for key in ("epoch", "step"))
    ):
        raise CorruptCheckpoint(f"{path}: {META} is not a format-{FORMAT} manifest")
    return meta


def validate(path: Path) -> CheckpointInfo:
    """The checkpoint at ``path`` if its manifest is complete and every file matches its hash.

    Raises:
        CorruptCheckpoint: a file is missing or does not match its sha256.
    """
    meta = _manifest(path)
    for name, entry in meta["files"].items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpoint(f"{path}: {name} is missing")
        if file.stat().st_size != entry.get("size") or _sha256(file) != entry.get("sha256"):
            raise CorruptCheckpoint(f"{path}: {name} does not match its sha256 in {META}")
    return CheckpointInfo(path, int(meta["epoch"]), int(meta["step"]), meta)


def latest_checkpoint(root: Path) -> CheckpointInfo | None:
    """The newest valid checkpoint under ``root``; newer broken ones are skipped with a warning."""
    for path in reversed(list_checkpoints(root)):
        try:
            return validate(path)
        except CorruptCheckpoint as exc:
            log.warning("ignoring checkpoint: %s", exc)
    return None


@dataclass(frozen=True, slots=True)
class RunPoint:
    """Where the run stands, as its coordinator account says: what a checkpoint must match to be current."""

    run_id: str
    epoch: int  # progress.epoch: the epoch now open (a Cooldown's save is for the one before it)
    start_step: int  # epoch_state.start_step: the step the open epoch started from


@dataclass(frozen=True, slots=True)
class Selection:
    """The checkpoint to resume from (None when nothing on disk is current) and why newer ones were not."""

    info: CheckpointInfo | None
    skipped: tuple[str, ...] = ()

    def describe(self, root: Path) -> str:
        """One clause for an error message: what the checkpoint directory had to offer."""
        if self.info is not None:
            return f"{self.info.path} is current"
        if not self.skipped:
            return f"no checkpoint of this run under {root}"
        return f"no current checkpoint under {root} ({self.skipped[0]})"


def current_checkpoint(root: Path, at: RunPoint) -> Selection:
    """The newest valid checkpoint under ``root`` that is current for ``at``, else a Selection without one.

    Current means: written for ``at.run_id`` (its manifest's run_id), at the end of an earlier epoch
    (``epoch < at.epoch``), at exactly the step the open epoch started from (``step == at.start_step``): the
    weights every client of the epoch starts from. A checkpoint at a smaller step is stale (the run trained on
    without this client, or the owner set the step back with ``update-config --restart-from-step``); one at a
    larger step or a later epoch belongs to another history of the same run id; both are passed over, as are
    partial and corrupt directories (with a warning). Only the chosen directory's files are hashed.
    """
    skipped: list[str] = []

    def skip(reason: str, *, warn: bool = False) -> None:
        skipped.append(reason)
        (log.warning if warn else log.info)("not resuming from checkpoint: %s", reason)

    for path in reversed(list_checkpoints(root)):
        try:
            meta = _manifest(path)
        except CorruptCheckpoint as exc:
            skip(str(exc), warn=True)
            continue
        epoch, step, run_id = meta["epoch"], meta["step"], meta.get("run_id")
        where = f"the run's epoch {at.epoch} started at step {at.start_step}"
        if run_id != at.run_id:
            skip(f"{path.name}: written for run {run_id!r}, not {at.run_id!r}")
        elif step < at.start_step:
            skip(f"{path.name}: stale, step {step} but {where}")
        elif step > at.start_step or epoch >= at.epoch:
            skip(f"{path.name}: ahead of the run (epoch {epoch} step {step}) but {where}")
        else:
            try:
                return Selection(validate(path), tuple(skipped))
            except CorruptCheckpoint as exc:
                skip(str(exc), warn=True)
    return Selection(None, tuple(skipped))
