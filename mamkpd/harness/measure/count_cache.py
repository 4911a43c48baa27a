"""An on-disk cache of fvcore counts, so that a model is traced once per checkout, not once per command.

A count depends only on the code that builds and runs the model and on the counting software, never on
the machine's load: it is keyed by the model's name, input size, batch and factory overrides, the scan
backend the model resolves to here (a fused or an unfused scan traces other ops), a digest of every file
under ``mamkpd/`` and ``baselines/`` (any edit there invalidates every entry), and the torch, fvcore and
numba versions. A hit is the count fvcore made, stored whole (its ``counter`` is
still ``fvcore``, its uncounted ops and per-operator counts included). Only models registered from those
two trees are cached (a model another package registers is counted every time).

The cache lies in ``$MAMKPD_COMPLEXITY_CACHE``, else ``$XDG_CACHE_HOME/mamkpd/complexity``, else
``~/.cache/mamkpd/complexity``; ``MAMKPD_COMPLEXITY_CACHE=off`` turns it off. An entry that cannot be
read (corrupt, truncated, from another layout) is counted again and rewritten; a directory that cannot be
written leaves the count uncached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ...engine.checkpoint import atomic_write
from .machine import distribution_version

__all__ = ["CACHE_ENV", "cache_dir", "cached_count", "source_digest"]

CACHE_ENV = "MAMKPD_COMPLEXITY_CACHE"
OFF = "off"


def cache_dir() -> Path | None:
    """Where the counts are cached, or None when ``$MAMKPD_COMPLEXITY_CACHE`` is ``off``."""
    chosen = os.environ.get(CACHE_ENV, "")
    if chosen.lower() == OFF:
        return None
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mamkpd" / "complexity"


def source_digest(roots: Iterable[Path]) -> str:
    """sha256 over every file under ``roots`` but Python's and numba's caches (``__pycache__``): its path
    relative to its root, then its bytes."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def _source_roots() -> tuple[Path, ...]:
    import baselines

    return Path(__file__).resolve().parents[2], Path(baselines.__file__).resolve().parent  # mamkpd/, baselines/


@functools.cache
def _sources() -> str:
    return source_digest(_source_roots())


def _key(name: str, input_size: tuple[int, int], batch: int, overrides: dict) -> str | None:
    """The entry's file stem, or None when the count cannot be keyed (a model from outside the hashed trees,
    overrides that are not plain JSON values)."""
    from ...models import model_info
    from ...ops import AUTO, resolve_backend

    module = sys.modules.get(getattr(model_info(name).factory, "__module__", ""), None)
    source = Path(getattr(module, "__file__", None) or "/").resolve()
    if not any(source.is_relative_to(root) for root in _source_roots()):
        return None
    try:  # the scan backend the model resolves to here (fused or unfused scan: other ops in the trace)
        backend = resolve_backend(str(overrides.get("scan_backend", AUTO)), "cpu").name
    except (RuntimeError, ValueError):
        return None  # the count itself says why it cannot run
    try:
        what = json.dumps(
            {
                "model": name,
                "input_size": list(input_size),
                "batch": batch,
                "overrides": overrides,
                "scan_backend": backend,
                "sources": _sources(),
                "torch": torch.__version__,
                "fvcore": distribution_version("fvcore"),
                "numba": distribution_version("numba"),
            },
            sort_keys=True,
        )
    except (TypeError, ValueError):
        return None
    return f"{name}-{hashlib.sha256(what.encode()).hexdigest()[:32]}"


def _read(path: Path, kind: type):
    """The ``kind`` dataclass stored at ``path``, or None where there is none or it is not one (counted again)."""
    try:
        fields = json.loads(path.read_text())
        result = kind(**dict(fields, input_size=tuple(fields["input_size"])))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    stored_whole = json.loads(json.dumps(dataclasses.asdict(result))) == fields
    return result if stored_whole and isinstance(result.params, int) and isinstance(result.flops, int) else None


def _write(path: Path, fields: dict) -> None:
    try:  # written whole then renamed: two processes counting the same model never leave half a file
        atomic_write(path, lambda f: json.dump(fields, f), mode="w")
    except OSError:
        pass  # a read-only cache directory: the count stands, uncached


def cached_count(
    kind: type, name: str, input_size: tuple[int, int], batch: int, overrides: dict, count: Callable[[], object]
):
    """``count()`` (a ``kind``, the :class:`~.complexity.Complexity` of the registered model ``name``), from the
    cache when an entry for exactly this model, size, batch, overrides, source and software is there."""
    where, key = cache_dir(), _key(name, input_size, batch, overrides)
    if where is None or key is None:
        return count()
    path = where / f"{key}.json"
    result = _read(path, kind)
    if result is not None:
        return result
    result = count()
    _write(path, dataclasses.asdict(result))
    return result
