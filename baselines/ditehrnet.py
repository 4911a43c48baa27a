"""Dite-HRNet (Li et al., IJCAI-ECAI 2022): Lite-HRNet with dynamic blocks, multi-scale depthwise convs whose
kernels are mixed per sample from a small bank, and attention-pooled global context in place of average
pooling.

Each module's two blocks (Dynamic Multi-scale Context) pool the weighted halves of all branches to the lowest
resolution by spatial attention (dense context modelling), convolve each branch with depthwise kernels of 3x3
(branches 1-2, a mix of 4 kernels), 3x3 and 5x5 (branch 3, channels split, mixes of 2) or 3x3 to 9x9 (branch 4,
4 splits, static), then gate its channels from an attention-pooled context (global context modelling). The
stem's shuffle unit uses the same dynamic convs and context gates. Transitions, fusion, iterative head and the
stage layout ((2, 4, 2) modules for -18, (3, 8, 3) for -30) are Lite-HRNet's (``litehrnet.py``).

Names follow the official release (ZiyiZhang27/Dite-HRNet, an MMPose 0.x project: ``backbone.*``,
``keypoint_head.final_layer``, declared as the ``mmpose0`` layout; MMPose 1.x's ``head.*`` is this suite's).

Facts of the official code the outputs depend on: its fusion's ReLU is in place, so that the lower branches
are fused from the stride-4 sum after its ReLU (Lite-HRNet: before); the dense context pooling reshapes each
(C, H * W) map into (h * w, C, H * W / (h * w)) groups of consecutive memory rather than into spatial windows
(the same reshape here); a kernel-attention bottleneck is a quarter of its input's channels (the stem's
first conv, on 3 channels, is static).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.models.registry import register_model

from .layers import ConvModule
from .litehrnet import LiteHRNet, TopDownHeatmapModel, channel_shuffle, litehrnet

KERNEL_BANK_RATIO = 4  # kernel attention's bottleneck
# per branch (strides 4, 8, 16, 32): depthwise splits (kernels 3, 5, 7, 9), kernels mixed, context bottleneck
SPLITS = (1, 1, 2, 4)
KERNELS_MIXED = (4, 4, 2, 1)
CONTEXT_RATIO = (4, 4, 8, 8)
DENSE_CONTEXT_RATIO = 8


class KernelAttention(nn.Module):
    """Per-sample weights of the kernel bank from the input's global average (sigmoid, not softmax)."""

    def __init__(self, channels: int, num_kernels: int):
        super().__init__()
        mid = channels // KERNEL_BANK_RATIO
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.bn = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, num_kernels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn(self.conv1(F.adaptive_avg_pool2d(x, 1))))
        return self.conv2(x).flatten(1).sigmoid()


class KernelBank(nn.Module):
    """``num_kernels`` conv weights, mixed by each sample's attention and applied as one grouped conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, num_kernels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_kernels, cout, cin // groups, kernel, kernel))
        for w in self.weight.data:
            nn.init.kaiming_uniform_(w)
        self.stride, self.groups = stride, groups

    def forward(self, x: Tensor, attention: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k, cout = self.weight.shape[:2]
        mixed = (attention @ self.weight.view(k, -1)).view(n * cout, *self.weight.shape[2:])
        pad = self.weight.shape[-1] // 2
        y = F.conv2d(x.reshape(1, n * c, h, w), mixed, None, self.stride, pad, groups=self.groups * n)
        return y.view(n, cout, *y.shape[-2:])


class DynamicConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, num_kernels: int):
        super().__init__()
        self.attention = KernelAttention(cin, num_kernels)
        self.aggregation = KernelBank(cin, cout, kernel, stride, groups, num_kernels)

    def forward(self, x: Tensor) -> Tensor:
        return self.aggregation(x, self.attention(x))


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, num_kernels: int = 1, relu: bool = False
) -> ConvModule:
    """Conv (a bank of ``num_kernels`` when more than one) + BN (+ ReLU), the official ``conv``/``bn`` names."""
    bank = DynamicConv(cin, cout, kernel, stride, groups, num_kernels) if num_kernels > 1 else None
    return ConvModule(cin, cout, kernel, stride, groups, act=nn.ReLU if relu else None, conv=bank)


def channel_gate(channels: int, mid: int) -> nn.Sequential:
    """1x1 conv + BN + ReLU, 1x1 conv + sigmoid (indices 0, 1, 3 as the official Sequentials)."""
    return nn.Sequential(
        nn.Conv2d(channels, mid, 1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(),
        nn.Conv2d(mid, channels, 1),
        nn.Sigmoid(),
    )


def attention_pool(x: Tensor, mask_conv: nn.Conv2d, groups: int) -> Tensor:
    """(N, C, groups): each of ``groups`` runs of consecutive (channel-major) memory of (C, H * W), weighted by a
    softmax over all H * W positions of the 1-channel mask (the official reshape)."""
    n, c, h, w = x.shape
    per = h * w // groups
    mask = mask_conv(x).view(n, 1, h * w).softmax(dim=2).view(n, groups, per, 1)
    return (x.reshape(n, groups, c, per) @ mask).permute(0, 2, 1, 3).reshape(n, c, groups)


class GlobalContext(nn.Module):
    """Channel gates from an attention-pooled context of the map, then BN."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.channel_attention = channel_gate(channels, channels // ratio)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        context = attention_pool(x, self.conv_mask, 1)[..., None]
        return self.bn(x * self.channel_attention(context))


class DenseContext(nn.Module):
    """Gates of every branch computed together from all branches attention-pooled to the lowest resolution.
    The official code builds a mask conv for the lowest branch too and never uses it: it is kept (the
    checkpoints and published counts have it) and frozen, as no gradient reaches it."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.channels = channels
        self.conv_mask = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in channels)
        self.conv_mask[-1].requires_grad_(False)
        self.channel_attention = channel_gate(sum(channels), sum(channels) // DENSE_CONTEXT_RATIO)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        lh, lw = xs[-1].shape[-2:]
        pooled = [
            attention_pool(x, m, lh * lw).view(*x.shape[:2], lh, lw)
            for x, m in zip(xs[:-1], self.conv_mask, strict=False)
        ]
        gates = self.channel_attention(torch.cat([*pooled, xs[-1]], dim=1)).split(self.channels, dim=1)
        return [x * F.interpolate(g, size=x.shape[-2:], mode="nearest") for x, g in zip(xs, gates, strict=True)]


class DynamicSplitConv(nn.Module):
    """Depthwise convs of kernels 3, 5, 7, ... on consecutive channel splits (the first takes the remainder),
    shuffled back together."""

    def __init__(self, channels: int, branch: int):
        super().__init__()
        splits = SPLITS[branch]
        self.split_channels = [channels // splits] * splits
        self.split_channels[0] += channels - sum(self.split_channels)
        self.conv = nn.ModuleList(
            conv_bn(c, c, 2 * i + 3, groups=c, num_kernels=KERNELS_MIXED[branch])
            for i, c in enumerate(self.split_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        if len(self.conv) == 1:
            return self.conv[0](x)
        parts = [conv(t) for conv, t in zip(self.conv, x.split(self.split_channels, dim=1), strict=True)]
        return channel_shuffle(torch.cat(parts, dim=1), len(parts))


class DynamicMultiScaleContextBlock(nn.Module):
    """Shuffle block of all branches: half of each branch's channels passes through, the other half gets the
    dense context gates, the split dynamic depthwise conv and the global context gates."""

    def __init__(self, channels: list[int]):
        super().__init__()
        halves = [c // 2 for c in channels]
        self.dcm = DenseContext(halves)
        self.conv = nn.ModuleList(DynamicSplitConv(c, b) for b, c in enumerate(halves))
        self.gcm = nn.ModuleList(GlobalContext(c, CONTEXT_RATIO[b]) for b, c in enumerate(halves))

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        kept, weighted = zip(*(x.chunk(2, dim=1) for x in xs), strict=True)
        weighted = self.dcm(list(weighted))
        weighted = [gcm(conv(x)) for x, conv, gcm in zip(weighted, self.conv, self.gcm, strict=True)]
        return [channel_shuffle(torch.cat((a, b), dim=1), 2) for a, b in zip(kept, weighted, strict=True)]


class DiteStem(nn.Module):
    """3x3 stride-2 conv, then a stride-2 shuffle unit of dynamic convs and context gates on its two halves."""

    def __init__(self, cin: int, channels: int):
        super().__init__()
        half = channels // 2
        mid = half // 4
        self.conv1 = conv_bn(cin, channels, 3, 2, relu=True)
        self.branch1 = nn.Sequential(
            conv_bn(half, half, 3, 2, groups=half, num_kernels=4),
            GlobalContext(half, 4),
            conv_bn(half, half, 1, num_kernels=4, relu=True),
        )
        self.branch2 = nn.Sequential(
            conv_bn(half, half, 3, groups=half, num_kernels=4),
            GlobalContext(half, 4),
            conv_bn(half, mid, 1, num_kernels=4, relu=True),
            conv_bn(mid, half, 1, num_kernels=4),
            conv_bn(half, half, 3, 2, groups=half, num_kernels=4, relu=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        return channel_shuffle(torch.cat((self.branch1(x1), self.branch2(x2)), dim=1), 2)


class DiteHRNet(LiteHRNet):
    stem_type = DiteStem
    block = DynamicMultiScaleContextBlock
    lower_from_activated = True


@register_model("ditehrnet", tags=("table2",))
def ditehrnet_18(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """Dite-HRNet-18: stages of 2, 4, 2 modules."""
    return litehrnet("18", "ditehrnet_18", num_keypoints, input_size, DiteHRNet)


@register_model("ditehrnet", tags=("table2",))
def ditehrnet_30(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """Dite-HRNet-30: stages of 3, 8, 3 modules."""
    return litehrnet("30", "ditehrnet_30", num_keypoints, input_size, DiteHRNet)


# The 384x288 model whose GFLOPs and AP Table 2's Dite-HRNet row prints: table2.csv compares those cells with it
@register_model("ditehrnet", input_size=(384, 288))
def ditehrnet_30_384x288(num_keypoints: int = 17, input_size: tuple[int, int] = (384, 288)) -> TopDownHeatmapModel:
    """Dite-HRNet-30 at 384x288 (ZiyiZhang27/Dite-HRNet's ditehrnet_30_coco_384x288.py)."""
    return litehrnet("30", "ditehrnet_30_384x288", num_keypoints, input_size, DiteHRNet)
