"""The scan and SS2D's cross scan in the form ONNX export lowers them to: one loop step per time step.

The recurrence runs under ``torch``'s ``scan`` higher-order op, which the ONNX exporter translates to one
ONNX ``Scan`` node whose body is the step alone:

    h = exp(delta_t * A) * h + (delta_t * u_t) * B_t,        y_t = sum_n h[n] * C_t[n]

(seven nodes: Mul, Exp, Mul, Mul, Add, Mul, ReduceSum). Everything else (bias, softplus, delta * u, the
cross scan's four orders and their merge) is done in bulk outside the loop. The cross scan stacks its four
directions (and the batch) into the state, so each SS2D is one ``Scan`` node, not four. The state is held
(..., N, channels), channels innermost, so each step's element-wise ops run over contiguous rows.

Why this form: timed by measuring (ONNX Runtime 1.32, CPU, 1 intra-op thread, CPU time; MamKPD-B's
stage-1 cross scan, 192 channels, 64x48, N 8, whole op; the eager ``numba`` fused kernel 10.5 ms at batch
1, 127 ms at batch 8, on the same loaded 2-core machine):

- the log-depth Hillis-Steele form this replaces: ~16x the eager time (issue 18; whole model 0.06x);
- this form: 41.5 ms at batch 1 (0.27x eager), 345 ms at batch 8 (0.37x);
- with exp(delta A) and delta u B precomputed in bulk and a Mul/Add(/Mul/ReduceSum) body: 60 to 78 ms
  (two state-sized tensors written and read through memory);
- chunked: sequential within chunks with the chunks stacked into the state, a pass over the chunks for
  the states they start from, then a second pass: 55 to 57 ms for chunks of 32, 64 or 128 at batch 1,
  627 ms at batch 8 (every exp computed twice);
- 4 or 16 steps unrolled in each ``Scan`` iteration: 46 ms (the per-node cost, not the loop, dominates);
- y as one MatMul (C_t as a row) instead of Mul + ReduceSum: 40 ms, within the noise; not taken;
- ONNX's ``Softplus`` is scalar in ONNX Runtime (9.6 ns an element against 0.11 for ``Exp``), so the
  softplus here is relu(x) + log1p(exp(-|x|)): 41.5 ms against 51.5 ms with ``Softplus``.

Whole models in ONNX Runtime against eager (numba), 256x192, 1 thread, one process, alternating: MamKPD-B
0.46x at batch 1 and 0.57x at batch 8 (0.06x with the log-depth form), MamKPD-S 0.41x/0.45x, MamKPD-L
0.48x/0.67x; HRNet-W32 1.84x/1.51x: short of issue 18's goal (MamKPD-B at least 1.0x). What is left is
per-node cost: each step runs seven small nodes, where the numba kernel keeps the state in registers. A
compiled C++ custom-op library is out: the onnxruntime wheel ships no C headers to build one against.

The other export form, ``custom-op`` (:mod:`mamkpd.export.custom_op`), writes each scan as one node that
onnxruntime-extensions runs with the numba kernel (the delta projection inside it, as eager): MamKPD-B in
onnxruntime 15.9 img/s at batch 1 and 15.2 at batch 8 (1.27x/1.17x eager, against 0.40x/0.35x for this form;
HRNet-W32 in onnxruntime 15.1/15.4; 1 thread, one process, alternating, the idle 2-core machine;
``benchmarks/test_bench_runtimes.py``); MamKPD-S 1.27x/1.23x (this form 0.39x/0.35x), MamKPD-L 1.33x/1.31x
(0.47x/0.43x). Its file runs only in a Python process with mamkpd and onnxruntime-extensions installed, so
this portable form stays the default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cross_contract import DIRECTIONS, check_cross_inputs, project_delta
from .scan_contract import check_inputs, compute_dtype, finish

__all__ = ["ONNX_SCAN_FORM", "cross_selective_scan_stepwise", "selective_scan_stepwise"]

ONNX_SCAN_FORM = "onnx-scan"  # what an export records as the scan its graph runs: ONNX's Scan over time


def _softplus(x: Tensor) -> Tensor:
    """softplus as exp/log/relu: ONNX Runtime's own Softplus kernel is about 100x slower than its Exp."""
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


def _recurrence(dt: Tensor, dtu: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The recurrence over dim 0, one step per time step; the state starts at zero.

    ``dt``, ``dtu``: (L, *S, 1, c); ``B``, ``C``: (L, *S, N, 1); ``A``: broadcastable to (*S, N, c).
    Returns y: (L, *S, c).
    """
    from torch._higher_order_ops.scan import scan

    def step(h: Tensor, xs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        dt_t, dtu_t, b_t, c_t = xs
        h = torch.exp(dt_t * A) * h + dtu_t * b_t
        return h.clone(), (h * c_t).sum(-2)  # clone: the scan op refuses a carry aliasing an output

    state = dt.new_zeros(torch.broadcast_shapes(dt.shape[1:], B.shape[1:]))
    return scan(step, state, (dt, dtu, B, C))[1]


def selective_scan_stepwise(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """:func:`.selective_scan` (mamba-ssm's arguments) as one loop over time with a small step, the form
    ONNX export lowers ``mamkpd::selective_scan`` to."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    ct = compute_dtype(u)
    bsz, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    n, dg = A.shape[1], dim // groups
    u_ = u.to(ct)
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = _softplus(dt)

    def channels(t: Tensor) -> Tensor:  # (batch, dim, L) -> (L, batch, groups, 1, dim_g)
        return t.permute(2, 0, 1).reshape(length, bsz, groups, 1, dg)

    def states(t: Tensor) -> Tensor:  # (batch, [groups,] N, L) -> (L, batch, groups, N, 1)
        return t.to(ct).reshape(bsz, groups, n, length).permute(3, 0, 1, 2).unsqueeze(-1)

    A_ = A.to(ct).reshape(groups, dg, n).transpose(1, 2).contiguous()  # the carry's strides stay fixed
    y = _recurrence(channels(dt), channels(dt * u_), A_, states(B), states(C))
    y = y.reshape(length, bsz, dim).permute(1, 2, 0)
    return finish(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


def _in_scan_order(t: Tensor) -> Tensor:
    """(batch, 4, c, H, W) -> (L, batch, 4, c): direction k's values in its own scan order (rows, columns,
    both reversed; :func:`.cross_contract.cross_scan_positions`)."""
    bsz, _, c, height, width = t.shape
    rows = lambda k: t[:, k].permute(2, 3, 0, 1).reshape(height * width, bsz, c)  # noqa: E731
    cols = lambda k: t[:, k].permute(3, 2, 0, 1).reshape(height * width, bsz, c)  # noqa: E731
    return torch.stack([rows(0), cols(1), rows(2).flip(0), cols(3).flip(0)], 2)


def _merged(y: Tensor, height: int, width: int) -> Tensor:
    """(L, batch, 4, c) in each direction's scan order -> (batch, c, H, W), the four directions summed."""
    _, bsz, _, c = y.shape
    rows = (y[:, :, 0] + y[:, :, 2].flip(0)).reshape(height, width, bsz, c).permute(2, 3, 0, 1)
    cols = (y[:, :, 1] + y[:, :, 3].flip(0)).reshape(width, height, bsz, c).permute(2, 3, 1, 0)
    return rows + cols


def cross_selective_scan_stepwise(
    x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, delta_proj_weight=None
):
    """:func:`.cross_selective_scan` (shapes in :mod:`.cross_selective_scan`) as one loop over time with
    the four directions and the batch stacked into the state: the form ONNX export lowers
    ``mamkpd::cross_selective_scan`` to (a low-rank delta projected first, one MatMul)."""
    check_cross_inputs(x, delta, A, B, C, D, delta_bias, delta_proj_weight)
    if delta_proj_weight is not None:
        delta = project_delta(delta, delta_proj_weight, channels_last=True)
    ct = compute_dtype(x)
    bsz, dim, height, width = x.shape
    n = A.shape[1]
    x_ = x.to(ct)
    dt = _in_scan_order(delta.to(ct))  # (L, batch, 4, dim)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct).view(DIRECTIONS, dim)
    if delta_softplus:
        dt = _softplus(dt)
    xs = _in_scan_order(x_.unsqueeze(1).expand(bsz, DIRECTIONS, dim, height, width))
    states = lambda t: _in_scan_order(t.to(ct)).unsqueeze(-1)  # noqa: E731  (L, batch, 4, N, 1)
    A_ = A.to(ct).view(DIRECTIONS, dim, n).transpose(1, 2).contiguous()
    y = _merged(_recurrence(dt.unsqueeze(-2), (dt * xs).unsqueeze(-2), A_, states(B), states(C)), height, width)
    if D is not None:  # each direction adds D_k * x at every position
        y = y + x_ * D.to(ct).view(DIRECTIONS, dim).sum(0)[:, None, None]
    return y.to(x.dtype)
