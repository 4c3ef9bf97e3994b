"""Trainer checkpoints on disk: atomic write of safetensors files plus a meta.json manifest with their sha256,
and discovery of the newest complete one (a partial or corrupt directory is skipped with a warning).

Layout: ``<root>/epoch-<EEEEEE>-step-<SSSSSSSS>/`` holding ``model.safetensors`` (full weights, Hugging Face
LLaMA names), ``optimizer.safetensors`` (AdamW moments), ``config.json`` (HF model config) and, written last,
``meta.json`` ({format, epoch, step, trainer_step, spec, files: {name: {sha256, size}}}). A directory is
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
        """The tensors of ``<name>.safetensors`` (CPU)."""
        try:
            return load_file(str(self.path / f"{name}.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise CorruptCheckpoint(f"{self.path}: {name}.safetensors: {exc}") from exc


def dir_name(epoch: int, step: int) -> str:
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


def validate(path: Path) -> CheckpointInfo:
    """The checkpoint at ``path`` if its manifest is complete and every file matches its hash."""
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: no {META} (an interrupted write)") from None
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"{path}: unreadable {META}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CorruptCheckpoint(f"{path}: {META} is not a format-{FORMAT} manifest")
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
