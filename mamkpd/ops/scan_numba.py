"""The ``numba`` backend: the scan's loops over time compiled by numba, forward and backward, parallel over
batch x channels. What ``auto`` picks on a CPU when numba is installed.

numba is imported only when the backend is first used (this module imports without it). The kernels
(:mod:`.scan_numba_kernels`) are compiled on first use for the dtype at hand and cached on disk by numba:
next to the source in ``__pycache__``, or, where that is not writable (a read-only site-packages), in the
user's cache directory (``~/.cache/numba``); ``NUMBA_CACHE_DIR`` moves it.

The kernels release the GIL and each runs a contiguous range of (batch, channel) tasks; ranges run on a pool
of ``torch.get_num_threads()`` threads, so one thread setting governs torch and the scan. (numba's own
``parallel=True`` doubles the first-call compile time and brings a threading layer that is either not
fork-safe (GNU OpenMP: a forked DataLoader worker hangs) or not thread-safe (workqueue).)

The backward recomputes the states of one channel at a time into scratch buffers of (L, N) per thread, not
per channel: nothing of size L x N per channel is kept between the forward and the backward.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .scan_contract import ScanBackend, compute_dtype, gradients_like, grouped

__all__ = ["BACKEND", "NUMBA_INSTALL_HINT"]

NUMBA_INSTALL_HINT = "the 'numba' scan backend needs numba; install it with `pip install numba`"
TASKS_PER_THREAD = 4  # task ranges per thread, for load balance
# backward tasks: each group's channels are cut into blocks until batch x groups x blocks reaches this; a
# count fixed by the shapes alone (not the threads), so that gradients do not depend on the thread count
BACKWARD_TASKS = 64


def _unavailable() -> str | None:
    if importlib.util.find_spec("numba") is None:
        return f"{NUMBA_INSTALL_HINT} (numba is not installed)"
    return None


@functools.lru_cache(maxsize=1)
def _kernels():
    reason = _unavailable()
    if reason:
        raise RuntimeError(reason)
    from . import scan_numba_kernels

    return scan_numba_kernels


_POOL: dict = {}
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers for this process (a forked child builds its own)."""
    key = (os.getpid(), threads)
    with _POOL_LOCK:
        if key not in _POOL:
            for old in _POOL.values():
                old.shutdown(wait=False)
            _POOL.clear()
            _POOL[key] = ThreadPoolExecutor(threads, thread_name_prefix="mamkpd-scan")
        return _POOL[key]


def _run(kernel, tasks: int, pieces: int, *args, **kwargs) -> None:
    """kernel(*args, first, last, **kwargs) over range(tasks), in ``pieces`` ranges on torch's thread count."""
    threads = min(torch.get_num_threads(), pieces)
    bounds = np.linspace(0, tasks, max(1, min(tasks, pieces)) + 1).astype(np.int64).tolist()
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
    if threads <= 1 or len(ranges) == 1:
        kernel(*args, 0, tasks, **kwargs)
        return
    futures = [_pool(threads).submit(kernel, *args, first, last, **kwargs) for first, last in ranges]
    for future in futures:
        future.result()


def _arrays(u, delta, A, B, C, D, z, delta_bias):
    """Contiguous arrays in the compute dtype, B and C time-major (batch, groups, L, N); absent inputs as
    the neutral values the kernels expect."""
    ct = compute_dtype(u)
    c = lambda t: t.detach().to(ct).contiguous()  # noqa: E731
    dim = u.shape[1]
    return dict(
        u=c(u),
        delta=c(delta),
        A=c(A),
        Bt=c(grouped(B).transpose(-1, -2)),
        Ct=c(grouped(C).transpose(-1, -2)),
        D=c(D) if D is not None else u.new_zeros(dim, dtype=ct),
        z=c(z) if z is not None else u.new_empty(0, 0, 0, dtype=ct),
        bias=c(delta_bias) if delta_bias is not None else u.new_zeros(dim, dtype=ct),
    )


def _np(tensors: dict) -> list:
    return [v.numpy() for v in tensors.values()]


def _numba_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernels = _kernels()
    t = _arrays(u, delta, A, B, C, D, z, delta_bias)
    out = torch.empty_like(t["u"])
    tasks = u.shape[0] * u.shape[1]
    pieces = TASKS_PER_THREAD * torch.get_num_threads()
    _run(kernels.scan_forward, tasks, pieces, *_np(t), bool(delta_softplus), out=out.numpy())
    return out.to(u.dtype)


def _numba_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernels = _kernels()
    t = _arrays(u, delta, A, B, C, D, z, delta_bias)
    g = gout.detach().to(t["u"].dtype).contiguous()
    bsz, dim, length = u.shape
    groups, n_state = t["Bt"].shape[1], A.shape[1]
    blocks = max(1, min(dim // groups, math.ceil(BACKWARD_TASKS / (bsz * groups))))
    like = t["u"]
    grads = dict(
        gu=torch.empty_like(like),
        gdelta=torch.empty_like(like),
        gA=like.new_empty(bsz, dim, n_state),
        gB=like.new_empty(bsz, groups, blocks, length, n_state),
        gC=like.new_empty(bsz, groups, blocks, length, n_state),
        gD=like.new_empty(bsz, dim),
        gz=torch.empty_like(like) if z is not None else like.new_empty(0, 0, 0),
        gbias=like.new_empty(bsz, dim),
    )
    out_arrays = dict(zip(grads, _np(grads), strict=True))
    _run(
        kernels.scan_backward,
        bsz * groups * blocks,
        TASKS_PER_THREAD * torch.get_num_threads(),
        g.numpy(),
        *_np(t),
        bool(delta_softplus),
        blocks,
        **out_arrays,
    )
    gB, gC = (grads[k].sum(2).transpose(-1, -2) for k in ("gB", "gC"))
    summed = (grads["gA"].sum(0), gB, gC, grads["gD"].sum(0))
    return gradients_like(
        (grads["gu"], grads["gdelta"], *summed, grads["gz"], grads["gbias"].sum(0)),
        (u, delta, A, B, C, D, z, delta_bias),
    )


BACKEND = ScanBackend(
    name="numba",
    forward=_numba_forward,
    backward=_numba_backward,
    device_types=("cpu",),
    unavailable=_unavailable,
    description="the scan's loops over time compiled by numba, run on torch's threads over batch x channels",
)
