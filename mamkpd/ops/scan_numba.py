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

The kernels take channels innermost (:mod:`.scan_numba_kernels`): the call puts u, delta, z and gout in
(batch, groups, L, channels) order, each group's channels padded to whole blocks, and the outputs back; a
task is one (batch, block of channels), its channels in SIMD lanes (:mod:`.scan_numba_vectors`). The backward
recomputes the states chunk by chunk from the states kept at chunk starts: nothing of size L x N per channel
is kept between the forward and the backward.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .cross_contract import cross_scan_positions
from .scan_contract import CrossScan, ScanBackend, compute_dtype, gradients_like, grouped

__all__ = ["BACKEND", "NUMBA_INSTALL_HINT", "numba_cross_scan_backward", "numba_cross_scan_forward"]

NUMBA_INSTALL_HINT = "the 'numba' scan backend needs numba; install it with `pip install numba`"
TASKS_PER_THREAD = 4  # task ranges per thread, for load balance


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


def _rows(t: Tensor, padded: int, dtype: torch.dtype) -> Tensor:
    """A (batch, K, L, C) view of any strides -> contiguous (batch, K, L, padded) in ``dtype``, the padding
    zero (no copy when ``t`` is already that)."""
    if padded == t.shape[-1]:
        return t.detach().to(dtype).contiguous()
    out = t.new_zeros(*t.shape[:-1], padded, dtype=dtype)
    out[..., : t.shape[-1]] = t.detach()
    return out


def _channels_last(t: Tensor | None, groups: int, padded: int, dtype: torch.dtype) -> Tensor:
    """(batch, groups * C, L) -> (batch, groups, L, padded) in ``dtype``, channels innermost, the padding zero;
    None -> the kernels' empty (0, 0, 0, 0) array."""
    if t is None:
        return torch.empty(0, 0, 0, 0, dtype=dtype)
    bsz, dim, length = t.shape
    return _rows(t.reshape(bsz, groups, dim // groups, length).transpose(-1, -2), padded, dtype)


def _per_channel(t: Tensor | None, groups: int, padded: int, dtype: torch.dtype) -> Tensor:
    """(groups * C, ...) -> (groups, ..., padded): A as (groups, N, padded), D and delta_bias as (groups,
    padded); absent -> zeros (no skip term, no bias)."""
    out = torch.zeros(groups, *(() if t is None else t.shape[1:]), padded, dtype=dtype)
    if t is not None:
        per_group = t.shape[0] // groups
        out[..., :per_group] = t.detach().reshape(groups, per_group, *t.shape[1:]).movedim(1, -1)
    return out


def _from_channels_last(t: Tensor, dim: int) -> Tensor:
    """(batch, groups, L, padded) -> (batch, dim, L)."""
    bsz, groups, length, _ = t.shape
    return t[..., : dim // groups].transpose(-1, -2).reshape(bsz, dim, length)


def _arrays(u, delta, A, B, C, D, z, delta_bias):
    """The kernels' arguments (layouts in :mod:`.scan_numba_kernels`): one sequence per group, each group's
    channels padded to whole blocks (a padded channel has u = A = 0: its state stays zero)."""
    kernels = _kernels()
    ct = compute_dtype(u)
    groups = grouped(B).shape[1]
    padded = _padded(u.shape[1] // groups)
    rows = lambda t: _channels_last(t, groups, padded, ct)  # noqa: E731
    per_channel = lambda t: _per_channel(t, groups, padded, ct)  # noqa: E731
    time_major = lambda t: grouped(t).detach().transpose(-1, -2).to(ct).contiguous()  # noqa: E731
    a = per_channel(A)
    return dict(
        x=rows(u),
        delta=rows(delta),
        z=rows(z),
        A2=a * kernels.LOG2E,
        A=a,
        Bt=time_major(B),
        Ct=time_major(C),
        D=per_channel(D),
        bias=per_channel(delta_bias),
        order=torch.arange(u.shape[2]).expand(groups, -1).contiguous(),
    )


def _numba_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernels = _kernels()
    t = _arrays(u, delta, A, B, C, D, z, delta_bias)
    out = torch.empty_like(t["x"])
    args = [t[k].numpy() for k in ("x", "delta", "z", "A2", "Bt", "Ct", "D", "bias", "order")]
    tasks = u.shape[0] * (t["x"].shape[-1] // kernels.BLOCK)
    _run(kernels.scan_forward, tasks, TASKS_PER_THREAD * torch.get_num_threads(), *args, bool(delta_softplus),
         out=out.numpy())  # fmt: skip
    return _from_channels_last(out, u.shape[1]).to(u.dtype)


def _numba_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernels = _kernels()
    t = _arrays(u, delta, A, B, C, D, z, delta_bias)
    groups, length, padded = t["x"].shape[1:]
    bsz, dim, n_state = u.shape[0], u.shape[1], A.shape[1]
    blocks = padded // kernels.BLOCK
    like = t["x"]
    grads = dict(
        gx=torch.empty_like(like),
        gdelta=torch.empty_like(like),
        gz=torch.empty_like(like) if z is not None else t["z"],
        gA=like.new_empty(bsz, groups, n_state, padded),
        gB=like.new_empty(bsz, blocks, groups, length, n_state),
        gC=like.new_empty(bsz, blocks, groups, length, n_state),
        gD=like.new_empty(bsz, groups, padded),
        gbias=like.new_empty(bsz, groups, padded),
    )
    g = _channels_last(gout, groups, padded, like.dtype)
    args = [t[k].numpy() for k in ("x", "delta", "z", "A2", "A", "Bt", "Ct", "D", "bias", "order")]
    _run(kernels.scan_backward, bsz * blocks, TASKS_PER_THREAD * torch.get_num_threads(), g.numpy(), *args,
         bool(delta_softplus), **{k: v.numpy() for k, v in grads.items()})  # fmt: skip
    per_group = dim // groups
    gA = grads["gA"].sum(0)[..., :per_group].transpose(-1, -2).reshape(dim, n_state)
    gB, gC = (grads[k].sum(1).transpose(-1, -2) for k in ("gB", "gC"))
    gD, gbias = (grads[k].sum(0)[:, :per_group].reshape(dim) for k in ("gD", "gbias"))
    rows = lambda k: _from_channels_last(grads[k], dim)  # noqa: E731
    return gradients_like(
        (rows("gx"), rows("gdelta"), gA, gB, gC, gD, rows("gz") if z is not None else None, gbias),
        (u, delta, A, B, C, D, z, delta_bias),
    )


def _padded(channels: int) -> int:
    block = _kernels().BLOCK
    return -(-channels // block) * block


def _cross_arrays(x, delta, A, B, C, D, delta_bias, order):
    """The kernels' arguments for the cross scan (shapes in :mod:`.cross_selective_scan`): x read once,
    channels innermost, by all four directions in their orders; delta at spatial positions; B and C
    gathered into scan order."""
    kernels = _kernels()
    ct = compute_dtype(x)
    bsz, dim, height, width = x.shape
    directions, n_state, length = delta.shape[1], A.shape[1], height * width
    padded = _padded(dim)
    # channels-last memory (as SS2D makes them) makes these permutes free
    x_rows = x.permute(0, 2, 3, 1).reshape(bsz, 1, length, dim)
    delta_rows = delta.permute(0, 1, 3, 4, 2).reshape(bsz, directions, length, dim)
    index = order[None, :, :, None].expand(bsz, directions, length, n_state)
    a = _per_channel(A, directions, padded, ct)

    def in_scan_order(t: Tensor) -> Tensor:  # (batch, 4, N, H, W) -> (batch, 4, L, N), step t of direction k
        return t.detach().flatten(3).transpose(-1, -2).gather(2, index).to(ct).contiguous()

    return dict(
        x=_rows(x_rows, padded, ct),
        delta=_rows(delta_rows, padded, ct),
        z=torch.empty(0, 0, 0, 0, dtype=ct),
        A2=a * kernels.LOG2E,
        A=a,
        Bt=in_scan_order(B),
        Ct=in_scan_order(C),
        D=_per_channel(D, directions, padded, ct),
        bias=_per_channel(delta_bias, directions, padded, ct),
        order=order.contiguous(),
    )


def numba_cross_scan_forward(x, delta, A, B, C, D, delta_bias, delta_softplus) -> Tensor:
    """The four-direction cross scan and merge in one kernel call (arguments as :func:`.cross_selective_scan`);
    y comes back in channels-last memory, as SS2D keeps x."""
    kernels = _kernels()
    order = cross_scan_positions(x.shape[2], x.shape[3], x.device)
    t = _cross_arrays(x, delta, A, B, C, D, delta_bias, order)
    bsz, dim, height, width = x.shape
    out = torch.empty_like(t["x"])
    args = [t[k].numpy() for k in ("x", "delta", "z", "A2", "Bt", "Ct", "D", "bias", "order")]
    tasks = bsz * (out.shape[-1] // kernels.BLOCK)
    _run(kernels.scan_forward, tasks, TASKS_PER_THREAD * torch.get_num_threads(), *args, bool(delta_softplus),
         out=out.numpy())  # fmt: skip
    y = out[:, 0, :, :dim].reshape(bsz, height, width, dim).permute(0, 3, 1, 2)
    return y.to(x.dtype).contiguous(memory_format=torch.channels_last)


def numba_cross_scan_backward(gout, x, delta, A, B, C, D, delta_bias, delta_softplus) -> tuple:
    """Gradients (dx, ddelta, dA, dB, dC, dD, ddelta_bias) of sum(gout * cross scan), None for absent inputs."""
    kernels = _kernels()
    order = cross_scan_positions(x.shape[2], x.shape[3], x.device)
    t = _cross_arrays(x, delta, A, B, C, D, delta_bias, order)
    bsz, dim, height, width = x.shape
    directions, length, padded = t["delta"].shape[1:]
    n_state, blocks = A.shape[1], padded // kernels.BLOCK
    like = t["x"]
    grads = dict(
        gx=torch.empty_like(like),
        gdelta=torch.empty_like(t["delta"]),
        gz=t["z"],
        gA=like.new_empty(bsz, directions, n_state, padded),
        gB=like.new_empty(bsz, blocks, directions, length, n_state),
        gC=like.new_empty(bsz, blocks, directions, length, n_state),
        gD=like.new_empty(bsz, directions, padded),
        gbias=like.new_empty(bsz, directions, padded),
    )
    g = _rows(gout.permute(0, 2, 3, 1).reshape(bsz, 1, length, dim), padded, like.dtype)
    args = [t[k].numpy() for k in ("x", "delta", "z", "A2", "A", "Bt", "Ct", "D", "bias", "order")]
    _run(kernels.scan_backward, bsz * blocks, TASKS_PER_THREAD * torch.get_num_threads(), g.numpy(), *args,
         bool(delta_softplus), **{k: v.numpy() for k, v in grads.items()})  # fmt: skip
    # dB, dC from scan order back to spatial positions: position order[k, t] takes step t's
    index = order[None, :, :, None].expand(bsz, directions, length, n_state)
    spatial = lambda k: grads[k].sum(1).new_zeros(bsz, directions, length, n_state).scatter_(2, index, grads[k].sum(1))  # noqa: E731
    gB, gC = (spatial(k).transpose(-1, -2).reshape(B.shape) for k in ("gB", "gC"))
    gx = grads["gx"][:, 0, :, :dim].reshape(bsz, height, width, dim).permute(0, 3, 1, 2)
    gdelta = grads["gdelta"][..., :dim].reshape(bsz, directions, height, width, dim).permute(0, 1, 4, 2, 3)
    gA = grads["gA"].sum(0)[..., :dim].transpose(-1, -2).reshape(directions * dim, n_state)
    gD, gbias = (grads[k].sum(0)[:, :dim].reshape(directions * dim) for k in ("gD", "gbias"))
    present = (x, delta, A, B, C, D, delta_bias)
    found = (gx, gdelta, gA, gB, gC, gD, gbias)
    return tuple(None if p is None else g.to(p.dtype) for g, p in zip(found, present, strict=True))


BACKEND = ScanBackend(
    name="numba",
    forward=_numba_forward,
    backward=_numba_backward,
    device_types=("cpu",),
    unavailable=_unavailable,
    description="the scan's loops over time compiled by numba, run on torch's threads over batch x channels",
    auto_priority=(("cpu", 0),),  # the compiled scan is the CPU default (numba is a dependency)
    # its kernels read rows of channels: x and delta channels innermost, y returned so
    cross=CrossScan(numba_cross_scan_forward, numba_cross_scan_backward, channels_last=True),
    compiled=True,
)
