"""VMamba's four-direction cross scan and its merge."""

from torch import Tensor


def cross_scan(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H*W): row-major, column-major, and both reversed. x may be in any memory
    layout (channels-last too): each order is read from it where it lies."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan expects (B, C, H, W), got shape {tuple(x.shape)}")
    return cross_scan_per_direction(x.unsqueeze(1).expand(-1, 4, -1, -1, -1))


def cross_scan_per_direction(x: Tensor) -> Tensor:
    """(B, 4, C, H, W) -> (B, 4, C, H*W): direction k of x put in scan order k (row-major, column-major, both
    reversed), each written once into the output, whatever the memory layout of x."""
    bsz, _, ch, height, width = x.shape
    out = x.new_empty(bsz, 4, ch, height * width)
    out[:, 0].view(bsz, ch, height, width).copy_(x[:, 0])
    out[:, 1].view(bsz, ch, width, height).copy_(x[:, 1].transpose(2, 3))
    out[:, 2].view(bsz, ch, height, width).copy_(x[:, 2].flip(-2, -1))
    out[:, 3].view(bsz, ch, width, height).copy_(x[:, 3].transpose(2, 3).flip(-2, -1))
    return out


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(B, 4, C, H*W) -> (B, C, H, W): undo each direction's order and sum them."""
    if y.dim() != 4 or y.shape[1] != 4 or y.shape[-1] != height * width:
        raise ValueError(f"cross_merge expects (B, 4, C, {height}*{width}), got shape {tuple(y.shape)}")
    y = y[:, :2] + y[:, 2:].flip(-1)
    bsz, _, ch, _ = y.shape
    rows = y[:, 0].reshape(bsz, ch, height, width)
    cols = y[:, 1].reshape(bsz, ch, width, height).transpose(2, 3)
    return rows + cols
