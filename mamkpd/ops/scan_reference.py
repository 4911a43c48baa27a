"""The oracle: the plain sequential recurrence (mamba-ssm's ``selective_scan_ref``), autograd through
every step. Slow; every backend is tested against it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .scan_contract import ScanBackend, always_available, check_inputs, compute_dtype, grouped

__all__ = ["BACKEND", "selective_scan_ref"]


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The sequential recurrence, step by step; gradients come from autograd. The oracle."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    ct = compute_dtype(u)
    u, delta, A = u.to(ct), delta.to(ct), A.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    bsz, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    Bg = grouped(B).to(ct).repeat_interleave(dim // groups, dim=1)  # (batch, dim, N, L)
    Cg = grouped(C).to(ct).repeat_interleave(dim // groups, dim=1)
    h = u.new_zeros(bsz, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bg[..., t]
        ys.append((h * Cg[..., t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(dtype_in)


BACKEND = ScanBackend(
    name="reference",
    forward=selective_scan_ref,
    backward=None,  # autograd through every step
    device_types=("cpu", "cuda"),
    unavailable=always_available,
    description="the sequential recurrence step by step in Python, autograd through it: the oracle, never timed",
    in_custom_op=False,  # its loop stays visible to autograd (and would unroll into a traced graph)
    deployable=False,
)
