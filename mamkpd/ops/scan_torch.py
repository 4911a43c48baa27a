"""The ``torch`` backend: a chunked, time-major scan in plain PyTorch, the fallback that runs anywhere.

Written with in-place ops on reused buffers (the costly part of a CPU scan in PyTorch is allocating and
page-faulting (L, dim, N) temporaries, not the arithmetic), with a hand-written backward that recomputes
the states chunk by chunk instead of storing them. Its loop over time runs in Python, so it is slow on
long sequences; the compiled backends replace it where they can run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .scan_contract import (
    ScanBackend,
    always_available,
    check_inputs,
    compute_dtype,
    effective_delta,
    finish,
    gradients_like,
    grouped,
)

__all__ = ["BACKEND", "CHUNK", "selective_scan_chunked"]

CHUNK = 64  # time steps per chunk: buffers of CHUNK*batch*dim*N stay cache-friendly


# Layout inside a chunk: (T, batch, groups, N, dim_g). Channels innermost keeps every broadcasting
# multiply vectorised (N is only 1-16 wide, far too short for an inner loop).
def _chunk_views(u, delta, B, C, s, e, groups):
    """Time-major slices of one chunk: (T, batch, groups, 1, dim_g) and (T, batch, groups, N, 1)."""
    bsz, dim, _ = u.shape
    tm = lambda t: t[:, :, s:e].permute(2, 0, 1).reshape(e - s, bsz, groups, 1, dim // groups)  # noqa: E731
    tn = lambda t: t[..., s:e].permute(3, 0, 1, 2).unsqueeze(-1)  # noqa: E731
    return tm(u), tm(delta), tn(B), tn(C)


def _chunk_states(dA, H, ud, Bc, dl, A_g, h0):
    """Fill dA = exp(delta*A) and H = states of one chunk, starting from h0. All in place."""
    torch.mul(dl, A_g, out=dA)
    dA.exp_()
    torch.mul(ud, Bc, out=H)
    H[0].addcmul_(dA[0], h0)
    for t in range(1, dl.shape[0]):
        H[t].addcmul_(dA[t], H[t - 1])


def _scan_setup(u, A, B, C, chunk):
    bsz, dim, length = u.shape
    B, C = grouped(B), grouped(C)
    groups, n = B.shape[1], A.shape[1]
    A_g = A.reshape(groups, dim // groups, n).transpose(1, 2).contiguous()  # (groups, N, dim_g)
    T = min(chunk, length)
    dA = u.new_empty(T, bsz, groups, n, dim // groups)
    return B, C, A_g, T, dA


def _scan_forward(u, delta, A, B, C, chunk=CHUNK, keep_starts=False):
    """y_t = <C_t, h_t> for all t, plus (optionally) the state at the start of every chunk."""
    bsz, dim, length = u.shape
    B, C, A_g, T, dA = _scan_setup(u, A, B, C, chunk)
    H = torch.empty_like(dA)
    h = torch.zeros_like(dA[0])
    y = u.new_empty(bsz, dim, length)
    starts = []
    for s in range(0, length, T):
        e = min(s + T, length)
        uc, dl, Bc, Cc = _chunk_views(u, delta, B, C, s, e, B.shape[1])
        if keep_starts:
            starts.append(h)
        _chunk_states(dA[: e - s], H[: e - s], uc * dl, Bc, dl, A_g, h)
        yc = torch.matmul(Cc.transpose(-1, -2), H[: e - s])  # (T, batch, groups, 1, dim_g)
        y[:, :, s:e] = yc.reshape(e - s, bsz, dim).permute(1, 2, 0)
        h = H[e - s - 1].clone()
    return y, starts


def _scan_backward(u, delta, A, B, C, gy, starts, chunk=CHUNK):
    """Gradients of sum(gy * y) with respect to u, delta, A, B, C (B and C returned 4-d), given the state at
    the start of every chunk from ``_scan_forward(..., keep_starts=True)``."""
    bsz, dim, length = u.shape
    B, C, A_g, T, dA = _scan_setup(u, A, B, C, chunk)
    groups = B.shape[1]
    H, G = torch.empty_like(dA), torch.empty_like(dA)
    gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
    gA = torch.zeros_like(A_g)
    gB, gC = torch.empty_like(B), torch.empty_like(C)
    carry = torch.zeros_like(dA[0])  # dL/dh at the last step of the previous chunk, through h_{t+1}
    for c in reversed(range(len(starts))):
        s = c * T
        e = min(s + T, length)
        L_c = e - s
        uc, dl, Bc, Cc = _chunk_views(u, delta, B, C, s, e, groups)
        gyc = gy[:, :, s:e].permute(2, 0, 1).reshape(L_c, bsz, groups, 1, dim // groups)
        ud = uc * dl
        a, Hc, Gc = dA[:L_c], H[:L_c], G[:L_c]
        _chunk_states(a, Hc, ud, Bc, dl, A_g, starts[c])
        # dL/dh_t = C_t gy_t + exp(delta_{t+1} A) dL/dh_{t+1}
        torch.mul(gyc, Cc, out=Gc)
        Gc[L_c - 1].add_(carry)
        for t in range(L_c - 2, -1, -1):
            Gc[t].addcmul_(a[t + 1], Gc[t + 1])
        carry = a[0] * Gc[0]
        gC[..., s:e] = torch.matmul(Hc, gyc.transpose(-1, -2)).squeeze(-1).permute(1, 2, 3, 0)
        # h_t = a_t h_{t-1} + b_t with b_t = delta u B: dL/db_t = G_t
        sB = torch.matmul(Bc.transpose(-1, -2), Gc)  # sum_n G B: (T, batch, groups, 1, dim_g)
        gB[..., s:e] = torch.matmul(Gc, ud.transpose(-1, -2)).squeeze(-1).permute(1, 2, 3, 0)
        # a_t = exp(delta_t A): dL/d(delta_t A) = G_t * h_{t-1} * a_t   (written over a)
        a.mul_(Gc)
        a[1:].mul_(Hc[:-1])
        a[0].mul_(starts[c])
        gA += torch.einsum("tbgnd,tbgd->gnd", a, dl.squeeze(-2))
        gdl = a.mul_(A_g).sum(-2, keepdim=True) + uc * sB
        gu[:, :, s:e] = (dl * sB).reshape(L_c, bsz, dim).permute(1, 2, 0)
        gdelta[:, :, s:e] = gdl.reshape(L_c, bsz, dim).permute(1, 2, 0)
    return gu, gdelta, gA.transpose(1, 2).reshape(dim, -1), gB, gC


def _chunked_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct = compute_dtype(u)
    u_, A_, B_, C_ = u.to(ct), A.to(ct), B.to(ct), C.to(ct)
    d = effective_delta(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    y, _ = _scan_forward(u_, d, A_, B_, C_)
    return finish(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


def _chunked_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct = compute_dtype(u)
    u_, A_, B_, C_, g = u.to(ct), A.to(ct), B.to(ct), C.to(ct), gout.to(ct)
    raw = delta.to(ct) if delta_bias is None else delta.to(ct) + delta_bias.to(ct)[None, :, None]
    d = F.softplus(raw) if delta_softplus else raw
    # one forward pass gives both the chunk start states and, for the z gate, the output before gating
    y, starts = _scan_forward(u_, d, A_, B_, C_, keep_starts=True)
    gz = None
    if z is not None:
        z_ = z.to(ct)
        if D is not None:
            y = y + D.to(ct)[None, :, None] * u_
        sig = torch.sigmoid(z_)
        gz = g * y * sig * (1 + z_ * (1 - sig))
        g = g * z_ * sig
    gu, gd, gA, gB, gC = _scan_backward(u_, d, A_, B_, C_, g, starts)
    gD = None
    if D is not None:
        gD = (g * u_).sum((0, 2))
        gu += g * D.to(ct)[None, :, None]
    if delta_softplus:
        gd = gd * torch.sigmoid(raw)
    gbias = None if delta_bias is None else gd.sum((0, 2))
    return gradients_like((gu, gd, gA, gB, gC, gD, gz, gbias), (u, delta, A, B, C, D, z, delta_bias))


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The ``torch`` backend's forward, callable without the custom op (no autograd)."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    return _chunked_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


BACKEND = ScanBackend(
    name="torch",
    forward=_chunked_forward,
    backward=_chunked_backward,
    device_types=("cpu", "cuda"),
    unavailable=always_available,
    description="chunked time-major scan in plain PyTorch (loop over time in Python)",
    auto_priority=(("cpu", 9), ("cuda", 9)),  # runs anywhere: what auto falls back to
)
