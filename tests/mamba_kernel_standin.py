"""A stand-in for mamba-ssm's compiled ``selective_scan_cuda``, in plain PyTorch on any device.

It follows ``csrc/selective_scan/selective_scan.cpp`` of the pinned releases (the file is the same in 2.3.0
and 2.3.2.post1): the same ``fwd``/``bwd`` arguments, the same ``TORCH_CHECK``s (except ``is_cuda``, so that
it runs on CPU tensors) and the same return lists. ``x`` holds, for each chunk of 2048 steps and each state,
the pair (product of the chunk's decays, state at the chunk's end), as the kernel's running prefix does (the
Python interface reads the last state as ``x[:, :, -1, 1::2]``); the backward starts each chunk from it, so
a caller that hands ``bwd`` a wrong ``x`` gets wrong gradients; its gradients are the reverse recurrence,
written out (not autograd). With z, ``bwd`` takes the gate's
gradient from the ``out`` it is given, as the kernel does. The recurrence itself is written here, not taken
from the suite, so the tests compare two independent codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 2048  # the kernel's n_chunks = (seqlen + 2048 - 1) / 2048
INPUT_TYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelCheckFailed(RuntimeError):
    """What a failed TORCH_CHECK raises (RuntimeError, as the extension's)."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise KernelCheckFailed(f"Expected {what} to be true, but got false.")


def _check_shape(t: torch.Tensor, *shape: int, name: str) -> None:
    _check(tuple(t.shape) == shape, f"{name} must have shape {shape}")


def _last_contiguous(t: torch.Tensor) -> bool:
    return t.stride(-1) == 1 or t.size(-1) == 1


def _check_args(u, delta, A, B, C, D, z, delta_bias):
    """The checks both of the C++ functions start with; returns (batch, dim, seqlen, dstate, n_groups)."""
    input_type, weight_type = u.dtype, A.dtype
    _check(input_type in INPUT_TYPES, "input_type == Float || Half || BFloat16")
    _check(weight_type in (torch.float32, torch.complex64), "weight_type == Float || ComplexFloat")
    _check(weight_type == torch.float32, "a real A (the stand-in has no complex kernel)")
    variable_b, variable_c = B.dim() >= 3, C.dim() >= 3
    _check(delta.dtype == input_type, "delta.scalar_type() == input_type")
    _check(B.dtype == (input_type if variable_b else weight_type), "B.scalar_type() == (...)")
    _check(C.dtype == (input_type if variable_c else weight_type), "C.scalar_type() == (...)")
    _check(_last_contiguous(u), "u.stride(-1) == 1 || u.size(-1) == 1")
    _check(_last_contiguous(delta), "delta.stride(-1) == 1 || delta.size(-1) == 1")
    batch, dim, seqlen = u.shape
    dstate = A.size(1)
    n_groups = B.size(1) if variable_b else 1
    _check(dstate <= 256, "selective_scan only supports state dimension <= 256")
    _check_shape(u, batch, dim, seqlen, name="u")
    _check_shape(delta, batch, dim, seqlen, name="delta")
    _check_shape(A, dim, dstate, name="A")
    for name, t, variable in (("B", B, variable_b), ("C", C, variable_c)):
        _check(variable, f"{name} variable (the stand-in has no time-invariant {name})")
        _check_shape(t, batch, n_groups, dstate, seqlen, name=name)
        _check(_last_contiguous(t), f"{name}.stride(-1) == 1 || {name}.size(-1) == 1")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check(t.dtype == torch.float32, f"{name}.scalar_type() == at::ScalarType::Float")
            _check(_last_contiguous(t), f"{name}.stride(-1) == 1 || {name}.size(-1) == 1")
            _check_shape(t, dim, name=name)
    if z is not None:
        _check(z.dtype == input_type, "z.scalar_type() == input_type")
        _check(_last_contiguous(z), "z.stride(-1) == 1 || z.size(-1) == 1")
        _check_shape(z, batch, dim, seqlen, name="z")
    return batch, dim, seqlen, dstate, n_groups


def _chunk_terms(u, delta, A, B, C, delta_bias, delta_softplus, start, stop, dim):
    """Steps start..stop in fp32: u, the effective delta, and B, C expanded to every channel of their group."""
    n_groups = B.shape[1]
    u_c, delta_c = u[..., start:stop].float(), delta[..., start:stop].float()
    if delta_bias is not None:
        delta_c = delta_c + delta_bias[None, :, None]
    if delta_softplus:
        delta_c = F.softplus(delta_c)
    expand = lambda t: t[..., start:stop].float().repeat_interleave(dim // n_groups, dim=1)  # noqa: E731
    return u_c, delta_c, expand(B), expand(C)


def _chunk_states(u_c, delta_c, A, B_c, h0):
    """The states h_0 (given) .. h_T of a chunk, and the product of its decays."""
    states, decay = [h0], torch.ones_like(h0)
    for t in range(u_c.shape[-1]):
        step = torch.exp(delta_c[:, :, t, None] * A)
        states.append(step * states[-1] + (delta_c[:, :, t] * u_c[:, :, t])[..., None] * B_c[..., t])
        decay = decay * step
    return states, decay


def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    batch, dim, seqlen, dstate, _ = _check_args(u, delta, A, B, C, D, z, delta_bias)
    n_chunks = (seqlen + CHUNK - 1) // CHUNK
    out = torch.empty_like(delta)
    x = torch.empty(batch, dim, n_chunks, dstate * 2, dtype=A.dtype, device=u.device)
    h = u.new_zeros(batch, dim, dstate, dtype=torch.float32)
    with torch.no_grad():
        for c in range(n_chunks):
            start, stop = c * CHUNK, min((c + 1) * CHUNK, seqlen)
            u_c, delta_c, B_c, C_c = _chunk_terms(u, delta, A, B, C, delta_bias, delta_softplus, start, stop, dim)
            states, decay = _chunk_states(u_c, delta_c, A, B_c, h)
            h = states[-1]
            y = (torch.stack(states[1:], dim=-1) * C_c).sum(2)
            if D is not None:
                y = y + D[None, :, None] * u_c
            out[..., start:stop] = y.to(out.dtype)
            x[:, :, c, 0::2], x[:, :, c, 1::2] = decay, h
    result = [out, x]
    if z is not None:
        result.append((out.float() * F.silu(z.float())).to(z.dtype))
    return result


def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute_out_z):
    batch, dim, seqlen, dstate, _ = _check_args(u, delta, A, B, C, D, z, delta_bias)
    _check(dout.dtype == u.dtype, "dout.scalar_type() == input_type")
    _check(_last_contiguous(dout), "dout.stride(-1) == 1 || dout.size(-1) == 1")
    _check_shape(dout, batch, dim, seqlen, name="dout")
    dy = dout.float()
    if z is not None:
        _check(out is not None, "out_.has_value()")
        _check(out.dtype == u.dtype, "out.scalar_type() == input_type")
        _check(_last_contiguous(out), "out.stride(-1) == 1 || out.size(-1) == 1")
        _check_shape(out, batch, dim, seqlen, name="out")
        _check(dz is None, "no preallocated dz (the suite never passes one)")
        zf = z.float()
        sig = torch.sigmoid(zf)
        # out * silu(z): the gate's gradient from the out the caller saved, as the kernel takes it
        dz = (dy * out.float() * sig * (1 + zf * (1 - sig))).to(z.dtype)
        dy = dy * F.silu(zf)
    n_chunks = (seqlen + CHUNK - 1) // CHUNK
    _check(n_chunks == 1 or x is not None, "x_.has_value()")
    if x is not None:
        _check(x.dtype == A.dtype, "x.scalar_type() == weight_type")
        _check(x.is_contiguous(), "x.is_contiguous()")
        _check_shape(x, batch, dim, n_chunks, 2 * dstate, name="x")
    n_groups = B.shape[1]
    per_group = lambda t: t.reshape(batch, n_groups, dim // n_groups, *t.shape[2:]).sum(2)  # noqa: E731
    du, ddelta = torch.zeros_like(u, dtype=torch.float32), torch.zeros_like(delta, dtype=torch.float32)
    dA = torch.zeros_like(A)
    dB, dC = torch.zeros_like(B, dtype=torch.float32), torch.zeros_like(C, dtype=torch.float32)
    dh = u.new_zeros(batch, dim, dstate, dtype=torch.float32)  # gradient of the state at the chunk's end
    for c in reversed(range(n_chunks)):
        start, stop = c * CHUNK, min((c + 1) * CHUNK, seqlen)
        u_c, delta_c, B_c, C_c = _chunk_terms(u, delta, A, B, C, delta_bias, delta_softplus, start, stop, dim)
        # the chunk starts from the state the forward left in x: nothing before it is recomputed
        h0 = x[:, :, c - 1, 1::2].float() if c else u.new_zeros(batch, dim, dstate, dtype=torch.float32)
        states, _ = _chunk_states(u_c, delta_c, A, B_c, h0)
        for t in reversed(range(stop - start)):
            dy_t = dy[:, :, start + t]
            step = torch.exp(delta_c[:, :, t, None] * A)
            g = dh + dy_t[..., None] * C_c[..., t]  # gradient of h_t
            dC[..., start + t] = per_group(dy_t[..., None] * states[t + 1])
            dB[..., start + t] = per_group(g * (delta_c[:, :, t] * u_c[:, :, t])[..., None])
            d_input = (g * B_c[..., t]).sum(-1)  # of delta_t * u_t
            through_decay = g * states[t] * step
            du[:, :, start + t] = delta_c[:, :, t] * d_input
            ddelta[:, :, start + t] = u_c[:, :, t] * d_input + (through_decay * A).sum(-1)
            dA += (through_decay * delta_c[:, :, t, None]).sum(0)
            dh = g * step
    if D is not None:
        du += D[None, :, None] * dy
    if delta_softplus:
        raw = delta.float() + (0 if delta_bias is None else delta_bias[None, :, None])
        ddelta = ddelta * torch.sigmoid(raw)
    result = [
        du.to(u.dtype),
        ddelta.to(delta.dtype),
        dA,
        dB.to(B.dtype),
        dC.to(C.dtype),
        None if D is None else (dy * u.float()).sum((0, 2)),
        None if delta_bias is None else ddelta.sum((0, 2)),
    ]
    if z is not None:
        result.append(dz)
    if recompute_out_z:
        result.append((out.float() * F.silu(z.float())).to(z.dtype))
    return result
