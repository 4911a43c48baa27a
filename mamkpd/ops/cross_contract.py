"""What SS2D's fused cross scan shares between its backends: the directions, their scan orders and the
argument checks (shapes in :mod:`.cross_selective_scan`)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DIRECTIONS", "check_cross_inputs", "cross_scan_positions"]

DIRECTIONS = 4  # rows, columns, and both reversed


def check_cross_inputs(x, delta, A, B, C, D, delta_bias) -> None:
    """Validate the cross scan's shapes; one line naming the argument that is wrong."""
    if x.dim() != 4:
        raise ValueError(f"cross_selective_scan: x must be (batch, dim, H, W), got shape {tuple(x.shape)}")
    bsz, dim, height, width = x.shape
    if A.dim() != 2 or A.shape[0] != DIRECTIONS * dim:
        raise ValueError(f"cross_selective_scan: A must be (4*dim={DIRECTIONS * dim}, N), got shape {tuple(A.shape)}")
    n = A.shape[1]
    expected = {"delta": (bsz, DIRECTIONS, dim, height, width), "B": (bsz, DIRECTIONS, n, height, width)}
    expected["C"] = expected["B"]
    for name, t in (("delta", delta), ("B", B), ("C", C)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"cross_selective_scan: {name} must be {expected[name]}, got shape {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (DIRECTIONS * dim,):
            raise ValueError(f"cross_selective_scan: {name} must be (4*dim={DIRECTIONS * dim},), got {tuple(t.shape)}")


def cross_scan_positions(height: int, width: int, device=None) -> Tensor:
    """(4, H*W) long: the row-major spatial position of step t of each direction of the cross scan."""
    rows = torch.arange(height * width, device=device)
    cols = rows.reshape(height, width).t().flatten()
    return torch.stack([rows, cols, rows.flip(0), cols.flip(0)])
