"""Pieces of work run on torch's own OpenMP team: the threads torch's parallel CPU ops run on.

Why: a thread pool beside torch's OpenMP team competes with it. After each of torch's parallel ops (a GEMM, a
convolution) GNU OpenMP's workers wait by spinning before they sleep (``GOMP_SPINCOUNT``: milliseconds), on the
cores such a pool runs on; work of a few milliseconds between two of torch's ops then gets what the spinning
leaves. MamKPD-B's scans, on a pool, took as long on 2 threads as on 1 (30 against 28 ms a forward, 2 cores);
on the team, 19-23 ms.

How: ``GOMP_parallel`` of the OpenMP runtime torch runs on (found among the process's mapped libraries: GNU's
libgomp, or LLVM's libomp or Intel's libiomp5, which export the same entry point), with a ctypes callback:
each thread of the team takes the next piece (a Python callable; the numba kernels release the GIL) until none
is left. :func:`openmp_team` gives None, and callers keep their own pool, where torch does not run on OpenMP
or its runtime cannot be told apart (no /proc, or two OpenMP runtimes and neither is torch's). As for torch's
own ops, a process forked from one whose team ran must keep to one thread (as DataLoader workers do): GNU
OpenMP's team does not survive a fork.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

__all__ = ["openmp_runtime_path", "openmp_team", "run_on_team"]

_RUNTIMES = ("libgomp", "libomp", "libiomp5")  # file names of the OpenMP runtimes torch builds link
_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void fn(void *data), the body GOMP_parallel runs on each thread


@functools.lru_cache(maxsize=1)
def openmp_runtime_path() -> str | None:
    """The OpenMP runtime library torch runs its parallel ops on, as mapped in this process (None: torch does not
    run on OpenMP, or the library cannot be told apart)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return None
    mapped = {fields[-1] for fields in map(str.split, maps.splitlines()) if fields and fields[-1].startswith("/")}
    found = sorted(p for p in mapped if os.path.basename(p).startswith(_RUNTIMES))
    torch_lib = os.path.dirname(torch.__file__) + os.sep
    own = [p for p in found if p.startswith(torch_lib)] or found  # the wheel's own copy first
    return own[0] if len(own) == 1 else None


@functools.lru_cache(maxsize=1)
def openmp_team():
    """``GOMP_parallel`` of torch's OpenMP runtime, where work can run on torch's team; else None."""
    path = openmp_runtime_path()
    if path is None:
        return None
    function = getattr(ctypes.CDLL(path), "GOMP_parallel", None)  # the library is mapped already: no second copy
    if function is not None:
        function.argtypes = [_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        function.restype = None
    return function


def run_on_team(threads: int, pieces: Sequence[Callable[[], object]]) -> None:
    """Run every piece once on a team of ``threads`` of torch's OpenMP threads (this thread among them), each
    thread taking the next piece until none is left; the first exception a piece raises is raised here, once
    every thread has stopped. Inside another OpenMP region the team is this thread alone (OpenMP's default)."""
    parallel = openmp_team()
    if parallel is None:
        raise RuntimeError("work cannot run on torch's OpenMP team in this process (openmp_team() is None)")
    order, errors = itertools.count(), []  # next() on a count is atomic under the GIL

    def take(_data) -> None:
        try:
            for index in iter(order.__next__, None):
                if index >= len(pieces) or errors:
                    return
                pieces[index]()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, not swallowed
            errors.append(exc)

    body = _BODY(take)  # referenced until GOMP_parallel returns
    parallel(body, None, threads, 0)
    if errors:
        raise errors[0]
