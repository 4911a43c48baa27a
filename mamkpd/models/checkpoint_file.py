"""Read a checkpoint file safely: ``torch.load(weights_only=True)`` with a short allow-list, one-line errors.

A checkpoint is a pickle, and a pickle can run code when it is loaded. Every checkpoint this suite reads
goes through :func:`read_checkpoint`, which loads it with ``weights_only=True``: only tensors, containers
and plain values, plus what the model zoos' release files carry besides their weights (see
:data:`ZOO_SAFE_GLOBALS`). Anything else is refused with :class:`UntrustedCheckpointError`, naming the
file and the globals it would import; ``trust=True`` (``--trust-checkpoint`` on the command line) loads a
file the user vouches for as a full pickle and says so. There is no silent fallback.

A file that is no checkpoint at all (empty, text, an image, an HTML page saved instead of the download)
or one that was cut short gives :class:`CheckpointFileError` / :class:`DamagedCheckpointError` with one
line naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointFileError",
    "DamagedCheckpointError",
    "UntrustedCheckpointError",
    "TrustedCheckpointWarning",
    "ZOO_SAFE_GLOBALS",
    "read_checkpoint",
    "require_file",
    "checkpoint_globals",
]


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read; the message is one line naming the file."""


class DamagedCheckpointError(CheckpointFileError):
    """A PyTorch checkpoint cut short or corrupted. ``strings`` are the names its readable part holds
    (the keys of its top-level dict, among others), so a caller can tell which kind of checkpoint it was."""

    def __init__(self, path: Path, problem: str, strings: frozenset[str] = frozenset()):
        super().__init__(f"{path} is truncated/damaged: {problem}")
        self.path = path
        self.problem = problem
        self.strings = strings


class UntrustedCheckpointError(CheckpointFileError):
    """A checkpoint whose pickle imports globals beyond the allow-list; ``globals`` names them."""

    def __init__(self, message: str, unsafe: list[str]):
        super().__init__(message)
        self.globals = unsafe


class TrustedCheckpointWarning(UserWarning):
    """A checkpoint was loaded as a full pickle because the caller said it trusts it."""


# --- stand-ins for the classes model-zoo release files pickle -------------------------------------------
# MMPose 1.x checkpoints (mmengine's Runner.save_checkpoint) hold the training's MessageHub (or its
# state_dict) with HistoryBuffer objects of numpy arrays. This suite never uses that metadata and does
# not depend on mmengine: these classes only hold the state the pickle gives them (no method of theirs
# is reachable from a file) and stand in under the qualified names the files use. A ConfigDict (a dict
# subclass) cannot stand in: torch's weights_only unpickler fills only plain dicts, so such a file is
# refused and needs --trust-checkpoint.


class _StateHolder:
    """An object rebuilt from a pickle's state and nothing else."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state), as pickle's BUILD
            state, slots = state
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} stand-in: {sorted(self.__dict__)}>"


class HistoryBuffer(_StateHolder):
    """Stand-in for ``mmengine.logging.history_buffer.HistoryBuffer`` (log values as numpy arrays)."""


class MessageHub(_StateHolder):
    """Stand-in for ``mmengine.logging.message_hub.MessageHub`` (early mmengine pickled the hub itself)."""


def _numpy_dtype_classes() -> list[type]:
    dtypes = getattr(np, "dtypes", None)
    return [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []


# numpy moved its core to numpy._core in 2.0; files written under 1.x name numpy.core (1.26 has a partial
# numpy._core, without multiarray, once something has imported it)
_NUMPY_CORE = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray

ZOO_SAFE_GLOBALS: tuple[tuple[Any, str], ...] = (
    # numpy arrays, scalars and dtypes: MMPose 0.x / ViTPose (mmcv) keep the best score as a numpy scalar in
    # meta["hook_msgs"], MMPose 1.x keeps dataset_meta arrays (sigmas, colours) and HistoryBuffer arrays
    (np.ndarray, "numpy.ndarray"),
    (np.dtype, "numpy.dtype"),
    (_NUMPY_CORE._reconstruct, "numpy.core.multiarray._reconstruct"),
    (_NUMPY_CORE._reconstruct, "numpy._core.multiarray._reconstruct"),
    (_NUMPY_CORE.scalar, "numpy.core.multiarray.scalar"),
    (_NUMPY_CORE.scalar, "numpy._core.multiarray.scalar"),
    # a dtype is rebuilt as an instance of its class in numpy.dtypes (numpy >= 1.25), then given its state
    *((cls, f"numpy.dtypes.{cls.__name__}") for cls in _numpy_dtype_classes()),
    # mmengine's training metadata, as inert stand-ins
    (HistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
    (MessageHub, "mmengine.logging.message_hub.MessageHub"),
)
_ALLOWED_NAMES = frozenset(name for _, name in ZOO_SAFE_GLOBALS)
# what torch's weights_only unpickler admits on its own (torch.* classes, rebuild functions and dtypes)
_TORCH_DEFAULT_NAMES = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
    }
)

_ZIP_MAGIC = b"PK\x03\x04"
_TAR_MAGIC_OFFSET, _TAR_MAGIC = 257, b"ustar"  # torch's oldest (pre-0.4) format
_KNOWN_FORMATS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<!DOCTYPE html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"{", "JSON text"),
    (b"[", "JSON text"),
    (b"\x08", "an ONNX model"),
)


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path if it is a file; else FileNotFoundError ("not found") or IsADirectory-like ValueError."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_checkpoint(path: str | os.PathLike, trust: bool = False) -> Any:
    """The object a checkpoint file holds, loaded on the CPU with ``weights_only=True`` and the zoo allow-list.

    ``trust=True`` loads it as a full pickle (which can run code from the file) and warns that it did.
    Raises FileNotFoundError, :class:`CheckpointFileError` (not a checkpoint), :class:`DamagedCheckpointError`
    and :class:`UntrustedCheckpointError`, each with a one-line message naming the file.
    """
    path = require_file(path, "checkpoint")
    _check_format(path)
    if trust:
        warnings.warn(
            f"{path}: loaded as a full pickle (weights_only=False) because it is trusted; "
            "a pickle can run code from the file",
            TrustedCheckpointWarning,
            stacklevel=2,
        )
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise _damaged(path, exc) from None
    try:
        with torch.serialization.safe_globals(list(ZOO_SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        unsafe = [name for name in checkpoint_globals(path) if not _allowed(name)]
        if not unsafe and "Weights only load failed" in str(exc):  # refused for a construct, not a global
            found = re.search(r"GLOBAL (\S+) was not|but got (<[^>]+>)", str(exc))
            unsafe = [found.group(1) or found.group(2)] if found else ["an object weights_only=True refuses"]
        if not unsafe:
            raise _damaged(path, exc) from None
        raise UntrustedCheckpointError(
            f"{path} is refused: its pickle imports {', '.join(unsafe)}, which a checkpoint of weights does not "
            "need and which could run code; if you trust this file, pass --trust-checkpoint "
            "(trust=True in Python) to load it as a full pickle",
            unsafe,
        ) from None


def _allowed(name: str) -> bool:
    return name in _ALLOWED_NAMES or name in _TORCH_DEFAULT_NAMES or name.startswith("torch.")


def _check_format(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        raise CheckpointFileError(f"{path} is empty (0 bytes): not a checkpoint; was its download or copy interrupted?")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise DamagedCheckpointError(
                path,
                f"a PyTorch zip checkpoint without its end (central directory missing; {path.stat().st_size:,} bytes)",
                _strings_of_first_pickle(path),
            )
        return
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return  # a legacy (pre-1.6) torch.save stream: pickles, then the raw storages
    if head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + len(_TAR_MAGIC)] == _TAR_MAGIC:
        return
    kind = next((f": {name}" for magic, name in _KNOWN_FORMATS if head.lstrip().startswith(magic)), "")
    if not kind and _is_text(head):
        kind = ": text"
    raise CheckpointFileError(f"{path} is not a PyTorch checkpoint (it starts with {head[:24]!r}{kind})")


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def _damaged(path: Path, exc: BaseException) -> DamagedCheckpointError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, EOFError | pickle.UnpicklingError) or "EOF" in reason:
        reason = f"it ends early ({reason})" if reason != "EOFError" else "it ends early"
    return DamagedCheckpointError(path, reason[:200], _strings_of_first_pickle(path))


def _pickle_bytes(path: Path) -> bytes:
    """The pickle of the checkpoint's object: ``*/data.pkl`` of a zip checkpoint (read from its first
    local header when the central directory is gone), or the legacy stream itself."""
    with open(path, "rb") as handle:
        data = handle.read(64 << 20)  # the object pickle sits in front of the tensor data
    if not data.startswith(_ZIP_MAGIC):
        return data
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            return archive.read(name)
    except (zipfile.BadZipFile, StopIteration, OSError):
        pass
    # torch writes data.pkl first and uncompressed, behind a local header of 30 bytes, its name and padding;
    # the pickle ends at its STOP opcode
    if len(data) < 30:
        return b""
    name_len, extra_len = struct.unpack("<HH", data[26:30])
    return data[30 + name_len + extra_len :]


def _pickle_ops(data: bytes):
    """(opcode name, argument) of each pickle in ``data``, up to where it stops making sense."""
    position = 0
    while position < len(data):
        try:
            for op, arg, pos in pickletools.genops(data[position:]):
                yield op.name, arg
                if op.name == "STOP":
                    position += pos + 1
                    break
            else:
                return
        except Exception:  # a truncated or foreign stream: what was read so far is all there is
            return
        if data[position : position + 1] != b"\x80":  # legacy format: after the pickles, raw storage bytes
            return


def checkpoint_globals(path: str | os.PathLike) -> list[str]:
    """Every global (``module.name``) the checkpoint's pickle imports, in the order it names them."""
    names: list[str] = []
    strings: list[str] = []  # the strings pushed so far (protocol 4 names a global by two of them)
    memo: dict[int, str] = {}
    memoized = 0  # MEMOIZE numbers every object it stores, strings or not
    top_is_string = False
    for op, arg in _pickle_ops(_pickle_bytes(Path(path))):
        pushed_string = False
        if op == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            strings.append(arg)
            pushed_string = True
        elif op in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
            index = memoized if op == "MEMOIZE" else int(arg)
            memoized += op == "MEMOIZE"
            if top_is_string:
                memo[index] = strings[-1]
            pushed_string = top_is_string
        elif op in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
            strings.append(memo[int(arg)])
            pushed_string = True
        elif op == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        top_is_string = pushed_string
    return list(dict.fromkeys(names))


def _strings_of_first_pickle(path: Path) -> frozenset[str]:
    try:
        return frozenset(
            arg for op, arg in _pickle_ops(_pickle_bytes(path)) if isinstance(arg, str) and op.endswith("UNICODE")
        )
    except OSError:
        return frozenset()
