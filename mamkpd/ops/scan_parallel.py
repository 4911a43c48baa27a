"""The scan with no loop over time: a two-level log-depth (Hillis-Steele) scan built only from slicing,
padding and element-wise ops, the form an exporter can lower to ONNX."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .scan_contract import check_inputs, compute_dtype, effective_delta, finish, grouped

__all__ = ["PARALLEL_CHUNK", "selective_scan_parallel"]

PARALLEL_CHUNK = 16  # chunk of the log-depth form: log2(16) full-size passes, the rest on chunk ends


def _shift(x: Tensor, step: int, fill: float) -> Tensor:
    """x shifted ``step`` places later along dim -2, the first ``step`` places filled with ``fill``."""
    return F.pad(x[..., :-step, :], (0, 0, step, 0), value=fill)


def _doubling_scan(a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan of h_t = a_t h_{t-1} + h_t along dim -2 in ceil(log2 T) doubling steps.
    Returns the cumulative decays and the states from a zero start."""
    step = 1
    while step < a.shape[-2]:
        h = h + a * _shift(h, step, 0.0)
        a = a * _shift(a, step, 1.0)
        step *= 2
    return a, h


def selective_scan_parallel(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk: int = PARALLEL_CHUNK
):
    """The scan as pad/slice/mul/add/exp only, with no loop over time: the form ONNX export lowers to.

    Two levels of log-depth (Hillis-Steele) scans: within chunks of ``chunk`` steps, then across the
    chunk ends, then each chunk's states corrected by the state it starts from. That is
    ceil(log2 chunk) passes over the (batch, dim, L, N) state instead of ceil(log2 L).
    """
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    ct = compute_dtype(u)
    u_, A_ = u.to(ct), A.to(ct)
    d = effective_delta(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    bsz, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    n, dg = A.shape[1], dim // groups
    T = min(chunk, length)
    nc = -(-length // T)
    pad = nc * T - length  # padded steps have delta = 0: decay 1, input 0, so states pass through unchanged
    d_p, du_p = F.pad(d, (0, pad)), F.pad(d * u_, (0, pad))
    # (batch, groups, dim_g, chunks, T, N): B and C broadcast over the channels of their group
    bc = lambda t: F.pad(grouped(t).to(ct), (0, pad)).reshape(bsz, groups, 1, n, nc, T).permute(0, 1, 2, 4, 5, 3)  # noqa: E731
    a = torch.exp(d_p.reshape(bsz, groups, dg, nc, T, 1) * A_.reshape(1, groups, dg, 1, 1, n))
    h = du_p.reshape(bsz, groups, dg, nc, T, 1) * bc(B)
    a, h = _doubling_scan(a, h)  # within each chunk
    _, ends = _doubling_scan(a[..., -1, :], h[..., -1, :])  # state at the end of each chunk
    h = h + a * _shift(ends, 1, 0.0).unsqueeze(-2)  # plus the decayed state each chunk starts from
    y = (h * bc(C)).sum(-1).reshape(bsz, dim, nc * T)[..., :length]
    return finish(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)
