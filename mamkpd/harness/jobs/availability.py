"""What a measurement needs and whether this machine has it, with the reason in words when it does not.

The reproductions skip with these reasons and ``mamkpd reproduce`` / ``mamkpd report`` record them, so
the wording is the same everywhere: ``no CUDA device``, ``COCO not found at …``, ``no checkpoint for …``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Availability",
    "cuda_status",
    "dataset_status",
    "checkpoint_status",
    "reproduce_dir",
    "slug",
    "sha256_of",
    "CHECKPOINT_DIR_ENV",
    "REPRODUCE_DIR_ENV",
]

CHECKPOINT_DIR_ENV = "MAMKPD_CHECKPOINT_DIR"  # official checkpoints a user downloaded: <dir>/<model>_<dataset>.pth
REPRODUCE_DIR_ENV = "MAMKPD_REPRODUCE_DIR"  # where `mamkpd reproduce` trains (default runs/reproduce)
_DISPLAY = {"coco": "COCO", "mpii": "MPII", "ap10k": "AP-10K"}


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # why not, in words; empty when ok
    path: Path | None = None


def cuda_status() -> Availability:
    import torch

    return Availability(True) if torch.cuda.is_available() else Availability(False, "no CUDA device")


def dataset_status(dataset: str, data_root: str | os.PathLike | None = None, split: str = "val") -> Availability:
    """Whether ``dataset``'s ``split`` can be read from ``data_root`` (or its environment variable)."""
    from ...data import DATASETS
    from ...data.roots import ANN_FILES, IMAGE_DIRS, root_or_env

    info = DATASETS[dataset]
    name = _DISPLAY.get(dataset, dataset)
    root = root_or_env(info, data_root)
    if not root:
        return Availability(False, f"{name} not found: no --data-root and {info.default_root_env} is not set")
    root = Path(root)
    for what, candidates, exists in (
        ("annotations", ANN_FILES[dataset][split], Path.is_file),
        ("images", IMAGE_DIRS[dataset][split], Path.is_dir),
    ):
        if not any(exists(root / c) for c in candidates):
            return Availability(False, f"{name} not found at {root} (no {split} {what}: {' or '.join(candidates)})")
    return Availability(True, path=root)


def reproduce_dir() -> Path:
    return Path(os.environ.get(REPRODUCE_DIR_ENV, "runs/reproduce"))


def checkpoint_status(model: str, dataset: str, table: str | None = None, row: str | None = None) -> Availability:
    """A checkpoint of ``model`` trained on ``dataset``: the suite's own (``mamkpd reproduce``) first,
    then an official one in ``$MAMKPD_CHECKPOINT_DIR``."""
    candidates = []
    if table and row:
        run = reproduce_dir() / table / slug(row)
        candidates += [run / "best.pth", run / "last.pth"]
    if os.environ.get(CHECKPOINT_DIR_ENV):
        base = Path(os.environ[CHECKPOINT_DIR_ENV])
        candidates += [base / f"{model}_{dataset}.pth", base / f"{model}.pth"]
    for path in candidates:
        if path.is_file():
            return Availability(True, path=path)
    looked = ", ".join(str(p) for p in candidates) or f"nothing: set {CHECKPOINT_DIR_ENV} or run mamkpd reproduce"
    return Availability(False, f"no checkpoint for {model} (looked at {looked})")


def slug(text: str) -> str:
    """A file-name-safe form of a paper row key ("w/o-Stem" → "w_o-Stem")."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
