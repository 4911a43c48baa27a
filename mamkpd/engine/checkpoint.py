"""Training checkpoints: atomic writes, RNG state capture, loading for resume and evaluation."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import re
import socket
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..models.checkpoint_file import DamagedCheckpointError, read_checkpoint

__all__ = [
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "load_training_state",
    "read_checkpoint_contents",
    "capture_rng_state",
    "restore_rng_state",
    "unwrap_model",
    "training_state_or_none",
    "is_training_state",
    "weights_only_safe",
    "remove_stale_temp_files",
    "TEMP_SUFFIX",
]

# atomic_write's temp files: ".<name>.<host>.<pid>.<random>.mamkpd-tmp" beside the target, so that the
# leftovers of a killed writer can be told apart from anything else in the folder, and from a live writer's
TEMP_SUFFIX = ".mamkpd-tmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
# every checkpoint the trainer writes holds these (last/best/epoch_N.pth and the weights-only partial.pth)
TRAIN_CHECKPOINT_KEYS = ("model", "config", "complete_epoch")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


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

    A failure while writing leaves the previous file untouched and no temp file behind; a failure of the
    file system (no space left, a read-only folder, a quota) is an OSError of one line that names the file,
    the cause and whether a previous version is intact. A kill can leave the temp file (named
    ``.<name>.<host>.<pid>.<random>.mamkpd-tmp``), never a half-written ``path``; :func:`remove_stale_temp_files`
    removes such leftovers. The file gets the mode a plain ``open(path, "w")`` would give it (0666 less the
    umask), not mkstemp's 0600.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            kept = f"the previous {path.name} is intact" if path.exists() else f"no earlier {path.name} existed"
            raise OSError(exc.errno, f"{path}: not written: {exc.strerror or exc}; {kept}") from exc
        raise
    return path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the temp files :func:`atomic_write` left in ``folder`` when its process was killed mid-write.

    Only files of atomic_write's own pattern, written on this host by a process that no longer runs, are
    removed (a live writer's temp file and everything else stay). Returns (path, bytes) of each one removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    host = _host()
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if not match or match["host"] != host or not entry.is_file() or entry.is_symlink():
            continue
        if _process_alive(int(match["pid"])):
            continue
        size = entry.stat().st_size
        entry.unlink(missing_ok=True)
        removed.append((entry, size))
    return removed


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON file written atomically."""
    return atomic_write(path, lambda f: json.dump(obj, f), mode="w")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def weights_only_safe(obj: Any) -> Any:
    """``obj`` with what ``torch.load(weights_only=True)`` would refuse turned into plain values: numpy
    scalars into Python numbers, numpy arrays into tensors, dataclasses into dicts, paths into strings."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return weights_only_safe(dataclasses.asdict(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, weights_only_safe(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: weights_only_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):  # named tuples become plain ones
        items = [weights_only_safe(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save(state)`` written atomically, with nothing in it that ``weights_only=True`` refuses.

    Serialised in memory first: torch's own file writer reports a full disk as an opaque "unexpected pos"
    error, a plain write as the OSError it is (see :func:`atomic_write`)."""
    state = weights_only_safe(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def is_training_state(obj: Any) -> bool:
    """Whether a loaded checkpoint is one mamkpd's trainer wrote (a dict with ``model`` and ``config``)."""
    return isinstance(obj, dict) and isinstance(obj.get("config"), dict) and isinstance(obj.get("model"), dict)


def read_checkpoint_contents(path: str | os.PathLike, trust: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """What the checkpoint at ``path`` holds, and the same as a training state if the trainer wrote it (else None).

    Read with ``weights_only=True`` (``trust``: see :func:`mamkpd.models.checkpoint_file.read_checkpoint`);
    a damaged file the trainer wrote is reported as a damaged ``mamkpd train`` checkpoint.
    """
    try:
        contents = read_checkpoint(path, trust=trust)
    except DamagedCheckpointError as exc:
        if set(TRAIN_CHECKPOINT_KEYS) <= exc.strings:
            raise DamagedCheckpointError(
                exc.path, f"a `mamkpd train` checkpoint, damaged ({exc.problem})", exc.strings
            ) from None
        raise
    return contents, (contents if is_training_state(contents) else None)


def training_state_or_none(path: str | os.PathLike, trust: bool = False) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if mamkpd's trainer wrote it, else None (a model-zoo file: load those with
    ``mamkpd.load_weights(model, path)``). Files that are no checkpoint, damaged or refused raise."""
    return read_checkpoint_contents(path, trust=trust)[1]


def load_training_state(path: str | os.PathLike, trust: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by the trainer (tensors and plain values only); a clear error otherwise."""
    state = training_state_or_none(path, trust=trust)
    if state is None:
        raise ValueError(
            f"{path} is not a `mamkpd train` checkpoint (no 'model' and 'config' entries); "
            "load model-zoo checkpoints with mamkpd.load_weights"
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
