"""What SS2D's fused cross scan shares between its backends: the directions, their scan orders and the
argument checks (shapes in :mod:`.cross_selective_scan`)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DIRECTIONS", "check_cross_inputs", "cross_scan_positions", "project_delta"]

DIRECTIONS = 4  # rows, columns, and both reversed


def check_cross_inputs(x, delta, A, B, C, D, delta_bias, delta_proj_weight=None) -> None:
    """Validate the cross scan's shapes; one line naming the argument that is wrong."""
    if x.dim() != 4:
        raise ValueError(f"cross_selective_scan: x must be (batch, dim, H, W), got shape {tuple(x.shape)}")
    bsz, dim, height, width = x.shape
    if A.dim() != 2 or A.shape[0] != DIRECTIONS * dim:
        raise ValueError(f"cross_selective_scan: A must be (4*dim={DIRECTIONS * dim}, N), got shape {tuple(A.shape)}")
    n = A.shape[1]
    delta_channels = dim
    if delta_proj_weight is not None:
        w = delta_proj_weight
        if w.dim() != 3 or tuple(w.shape[:2]) != (DIRECTIONS, dim):
            raise ValueError(
                f"cross_selective_scan: delta_proj_weight must be (4, dim={dim}, rank), got shape {tuple(w.shape)}"
            )
        delta_channels = w.shape[2]
    expected = {"delta": (bsz, DIRECTIONS, delta_channels, height, width), "B": (bsz, DIRECTIONS, n, height, width)}
    expected["C"] = expected["B"]
    for name, t in (("delta", delta), ("B", B), ("C", C)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"cross_selective_scan: {name} must be {expected[name]}, got shape {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (DIRECTIONS * dim,):
            raise ValueError(f"cross_selective_scan: {name} must be (4*dim={DIRECTIONS * dim},), got {tuple(t.shape)}")


def project_delta(delta: Tensor, weight: Tensor, channels_last: bool) -> Tensor:
    """The low-rank delta (batch, 4, rank, H, W) through each direction's projection ``weight`` (4, dim, rank):
    (batch, 4, dim, H, W), VMamba's ``dt_projs`` (no bias: the scan adds ``delta_bias``). ``channels_last``:
    the result has dim innermost in memory (as SS2D's x), otherwise it is contiguous."""
    bsz, k, rank, height, width = delta.shape
    weight = weight.to(delta.dtype)  # under autocast the op gets delta in the autocast dtype, weight as stored
    if channels_last:  # (batch, 4, L, rank) @ (4, rank, dim): rows of channels at each position
        out = torch.matmul(delta.flatten(3).transpose(-1, -2), weight.transpose(-1, -2))
        return out.view(bsz, k, height, width, -1).permute(0, 1, 4, 2, 3)
    return torch.matmul(weight, delta.flatten(3)).view(bsz, k, -1, height, width)


def cross_scan_positions(height: int, width: int, device=None) -> Tensor:
    """(4, H*W) long: the row-major spatial position of step t of each direction of the cross scan."""
    rows = torch.arange(height * width, device=device)
    cols = rows.reshape(height, width).t().flatten()
    return torch.stack([rows, cols, rows.flip(0), cols.flip(0)])
