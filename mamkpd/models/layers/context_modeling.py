"""Downsampling modules that open each MamKPD stage: the paper's context modelling module (CMM) and
the two alternatives of its ablations (patch merging, and a plain linear patch embedding).

All take (B, C_in, H, W) and return one tensor, channels-last features (B, H/s, W/s, C_out). The stage
feeds it to its SS2D blocks and, after a CMM, gates the SS2D output with this same tensor (the
intra-patch features).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ContextModeling(nn.Module):
    """CMM (paper Eq. 5): inter-patch modelling, then intra-patch feature extraction.

    inter = LN(Embed(DWConv_s2(x)))     DWConv: 3x3 depthwise, stride 2 (downsamples, widens the receptive field)
                                        Embed: 3x3 conv grouped by gcd(C_in, C_out) (patch embedding)
    cmm   = DWConv_1x1(Linear(inter))   per-patch cues
    ``embed_stride`` 2 lets the first stage of a stem-less model reach /4.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_stride: int = 1):
        super().__init__()
        self.downsample = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels)
        self.embed = nn.Conv2d(
            in_channels, out_channels, 3, stride=embed_stride, padding=1, groups=math.gcd(in_channels, out_channels)
        )
        self.norm = nn.LayerNorm(out_channels)
        self.linear = nn.Linear(out_channels, out_channels)
        self.pointwise = nn.Conv2d(out_channels, out_channels, 1, groups=out_channels)
        self.stride = 2 * embed_stride

    def forward(self, x: Tensor) -> Tensor:
        inter = self.norm(self.embed(self.downsample(x)).permute(0, 2, 3, 1))
        cues = self.linear(inter)
        if torch.jit.is_tracing():  # FLOP counters (fvcore traces) see the conv the paper counts
            return self.pointwise(cues.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        # the same per-channel scale and shift in one pass: PyTorch runs a 1x1 depthwise conv on channels-last
        # features as one tiny conv per channel (hundreds of calls, ~4% of MamKPD-B's CPU forward)
        return torch.addcmul(self.pointwise.bias, cues, self.pointwise.weight.view(-1))


class PatchMerging(nn.Module):
    """Swin/VMamba patch merging: concatenate each 2x2 (or s x s) neighbourhood, LayerNorm, Linear."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.norm = nn.LayerNorm(stride * stride * in_channels)
        self.reduction = nn.Linear(stride * stride * in_channels, out_channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        x = x.reshape(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).reshape(b, h // s, w // s, s * s * c)
        return self.reduction(self.norm(x))


class LinearPatchEmbed(nn.Module):
    """A non-overlapping s x s conv and LayerNorm: downsampling with no context modelling (the w/o-CMM
    and Base ablations)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(in_channels, out_channels, stride, stride=stride)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))
