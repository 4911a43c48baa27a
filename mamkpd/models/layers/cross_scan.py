"""VMamba's four-direction cross scan and its merge."""

import torch
from torch import Tensor


def cross_scan(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H*W): row-major, column-major, and both reversed."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan expects (B, C, H, W), got shape {tuple(x.shape)}")
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    forward = torch.stack([rows, cols], dim=1)
    return torch.cat([forward, forward.flip(-1)], dim=1)


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(B, 4, C, H*W) -> (B, C, H, W): undo each direction's order and sum them."""
    if y.dim() != 4 or y.shape[1] != 4 or y.shape[-1] != height * width:
        raise ValueError(f"cross_merge expects (B, 4, C, {height}*{width}), got shape {tuple(y.shape)}")
    y = y[:, :2] + y[:, 2:].flip(-1)
    bsz, _, ch, _ = y.shape
    rows = y[:, 0].reshape(bsz, ch, height, width)
    cols = y[:, 1].reshape(bsz, ch, width, height).transpose(2, 3)
    return rows + cols
