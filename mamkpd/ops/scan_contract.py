"""What every selective-scan backend shares: the argument contract (shapes, groups, dtypes), the
prologue and epilogue around the recurrence, and the record a backend registers.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t
    y_t = <C_t, h_t> + D * u_t,        out_t = y_t * silu(z_t)

Shapes follow mamba-ssm: u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or
(batch, groups, N, L), each group serving dim // groups consecutive channels; D, delta_bias: (dim,).
Half-precision inputs are computed in float32 and returned in their own dtype; float64 stays float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FLOAT_DTYPES",
    "CrossScan",
    "ScanBackend",
    "check_inputs",
    "compute_dtype",
    "effective_delta",
    "finish",
    "gradients_like",
    "grouped",
]


FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class CrossScan:
    """A backend's fused SS2D cross scan (see :mod:`.cross_selective_scan`): the four directions' scan and
    merge in one kernel call, inside the custom op ``mamkpd::cross_selective_scan``.

    ``forward(x, delta, A, B, C, D, delta_bias, delta_softplus) -> y`` and ``backward(gout, x, delta, A, B,
    C, D, delta_bias, delta_softplus) -> (dx, ddelta, dA, dB, dC, dD, ddelta_bias)``. ``channels_last``: the
    kernel reads x and delta with channels innermost in memory (as SS2D holds x) and returns y that way;
    otherwise it wants them contiguous, channels first. ``projects_delta``: ``forward`` also takes
    ``delta_proj_weight=`` and then a low-rank delta, projected as the kernel reads it (the op projects it
    first for a kernel that does not). ``saved_like``: as :class:`ScanBackend`'s, ``(x, A) -> [empty
    tensors]``, for a kernel whose forward can keep tensors for its backward (triton's chunk-start states):
    its ``forward`` then takes ``keep_saved`` (whether a gradient will be taken) last and returns ``(y,
    [tensors])``, empty when not kept, and its ``backward`` gets them as ``saved=``.
    """

    forward: Callable[..., Tensor]
    backward: Callable[..., tuple]
    channels_last: bool
    projects_delta: bool = False
    saved_like: Callable[..., list[Tensor]] | None = None

    @property
    def output_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass(frozen=True)
class ScanBackend:
    """A scan implementation, and what it can do. The registry of them is
    :data:`.selective_scan.SCAN_BACKENDS`; everything else (the CLI's choices, ``auto``, SS2D's fused path,
    the GPU check) asks these fields, never a backend's name.

    ``forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> out`` and
    ``backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (du, ddelta, dA, dB, dC, dD, dz,
    ddelta_bias)`` (None for an absent input) run inside the custom op ``mamkpd::selective_scan``, unless
    ``in_custom_op`` is False (the reference: plain autograd through every step, ``backward`` unused).
    ``unavailable()`` returns None when the backend can run here, else the reason and how to install it.
    ``auto_priority`` ranks it for ``auto`` on each device type it lists (lower first; a device type it does
    not list never picks it). ``cross`` is its fused cross scan, None where SS2D gathers the four orders.
    ``saved_like``: for a backend whose forward keeps tensors for its backward (mamba-ssm's chunk states,
    triton's chunk-start states), ``(u, A, z) -> [empty tensors of their shapes and dtypes]`` (the op's fake
    kernel); its ``forward`` then takes ``keep_saved`` last (whether a gradient will be taken: the op keeps
    nothing otherwise) and returns ``(out, [tensors])``, and its ``backward`` gets them as ``saved=``.
    None: the backward needs only the inputs.
    """

    name: str
    forward: Callable[..., Tensor]
    backward: Callable[..., tuple] | None
    device_types: tuple[str, ...]
    unavailable: Callable[[], str | None]
    description: str
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    auto_priority: tuple[tuple[str, int], ...] = ()
    cross: CrossScan | None = None
    saved_like: Callable[..., list[Tensor]] | None = None
    in_custom_op: bool = True
    # measured for speed (FPS, the GPU check's scan cells); False for the step-by-step oracle
    deployable: bool = True
    # a compiled kernel (not loops in Python): what the GPU check times against its roofline
    compiled: bool = False

    def priority_on(self, device_type: str) -> int | None:
        """Rank for ``auto`` on ``device_type``; None where ``auto`` never picks it."""
        return dict(self.auto_priority).get(device_type)


def always_available() -> str | None:
    return None


def check_inputs(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Validate shapes; return the number of B/C groups."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    bsz, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {tuple(delta.shape)} != u shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            ok = t.shape == (bsz, n, length)
        elif t.dim() == 4:
            ok = t.shape[0] == bsz and t.shape[2:] == (n, length) and dim % t.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be (batch={bsz}, N={n}, L={length}) or (batch, groups, N, L) with "
                f"groups dividing dim={dim}, got shape {tuple(t.shape)}"
            )
    # a 3-d B or C is one group (as mamba-ssm reads it), so a 3-d B pairs only with a one-group 4-d C
    groups_b, groups_c = (1 if t.dim() == 3 else t.shape[1] for t in (B, C))
    if groups_b != groups_c:
        raise ValueError(
            f"selective_scan: B has {groups_b} group(s) (shape {tuple(B.shape)}) but C has {groups_c} "
            f"(shape {tuple(C.shape)}); they must have the same number"
        )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim={dim},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")
    return groups_b


def compute_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def grouped(t: Tensor) -> Tensor:
    """(batch, N, L) -> (batch, 1, N, L); 4-d tensors unchanged."""
    return t.unsqueeze(1) if t.dim() == 3 else t


def effective_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def gradients_like(grads, inputs) -> tuple:
    """Backend gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), dB and dC 4-d, returned each in its
    input's shape and dtype (3-d for a 3-d B or C), None for an absent input."""
    grads = list(grads)
    for i in (3, 4):  # B, C
        if inputs[i].dim() == 3:
            grads[i] = grads[i].squeeze(1)
    return tuple(None if x is None else g.to(x.dtype) for g, x in zip(grads, inputs, strict=True))
