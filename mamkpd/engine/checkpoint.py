"""Training checkpoints: atomic writes, RNG state capture, loading for resume and evaluation."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "load_training_state",
    "capture_rng_state",
    "restore_rng_state",
    "unwrap_model",
    "training_state_or_none",
]


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask sets as it reads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` through ``write(file)`` into a temp file in the same folder, then os.replace.

    A failure (or a kill) while writing leaves the previous file untouched and no temp file behind
    (a kill can leave a ``.tmp`` file, never a half-written ``path``). The file gets the mode a plain
    ``open(path, "w")`` would give it (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON file written atomically."""
    return atomic_write(path, lambda f: json.dump(obj, f), mode="w")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save(state)`` written atomically."""
    return atomic_write(path, lambda f: torch.save(state, f))


def training_state_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if mamkpd's trainer wrote it (a dict with ``model`` and ``config``), else None.

    Model-zoo files (official HRNet / ViTPose / MMPose checkpoints) give None: load those with
    ``mamkpd.load_weights(model, path)``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickled objects beyond tensors: not one of ours
        return None
    if isinstance(state, dict) and isinstance(state.get("config"), dict) and isinstance(state.get("model"), dict):
        return state
    return None


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by the trainer (tensors and plain values only); a clear error otherwise."""
    state = training_state_or_none(path)
    if state is None:
        raise ValueError(
            f"{path} is not a readable mamkpd training checkpoint (no 'model' and 'config' entries, "
            "or a damaged file); load model-zoo checkpoints with mamkpd.load_weights"
        )
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states, as tensors and plain values (weights_only-safe)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
