"""Lite-HRNet (Yu et al., CVPR 2021): HRNet's parallel multi-resolution branches built from shuffle blocks
whose 1x1 convolutions are replaced by conditional channel weighting.

A ShuffleNet-like stem takes the crop to stride 4 (32 channels); three stages of 2, 3 and 4 branches (40,
80, 160, 320 channels at strides 4 to 32) each repeat a module of two channel-weighting blocks (weights
pooled across all resolutions, a 3x3 depthwise conv, spatial weighting on the half of the channels the
shuffle passes through) followed by HRNet's fusion. An iterative head adds each branch, upsampled, to the
next higher one through depthwise-separable convs; a 1x1 conv maps the stride-4 result to (N, K, H/4, W/4)
heatmaps. Lite-HRNet-18 and -30 differ only in how many modules each stage has: (2, 4, 2) and (3, 8, 3).

Names follow MMPose 1.x's ``LiteHRNet`` (``backbone.stem.conv1.conv``, ``head.final_layer``), so its
checkpoints load strictly; the official release (HRNet/Lite-HRNet, MMPose 0.x) names the head
``keypoint_head``, declared as a second layout.

Facts of the official code the outputs depend on: its fusion starts the stride-4 sum from that branch's
own map and adds it again (twice that branch), in place, so that the lower branches are fused from the
stride-4 sum (before its ReLU) rather than from the branch's map; the channel-weighting pooling and the
fusion's upsampling need every stride to divide the input, hence input sizes multiples of 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.models.init import hrnet_init
from mamkpd.models.registry import register_model

from .hrnet import HRNetHead
from .layers import ConvModule
from .topdown import TopDownHeatmapModel, check_input_size, topdown_layouts

STEM_CHANNELS = 32
BRANCH_CHANNELS = (40, 80, 160, 320)  # strides 4, 8, 16, 32
REDUCE_RATIO = 8  # cross-resolution weighting's bottleneck
SPATIAL_RATIO = 4  # spatial weighting's bottleneck


@dataclass(frozen=True)
class LiteHRNetConfig:
    num_modules: tuple[int, int, int]  # modules of the 2-, 3- and 4-branch stages
    blocks_per_module: int = 2


LITEHRNET_SIZES = {"18": LiteHRNetConfig((2, 4, 2)), "30": LiteHRNetConfig((3, 8, 3))}


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def depthwise_then_pointwise(cin: int, cout: int, stride: int, relu: bool) -> nn.Sequential:
    """3x3 depthwise conv + BN, 1x1 conv + BN (+ ReLU): indices 0-4 as the official Sequentials."""
    layers = [
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Stem(nn.Module):
    """3x3 stride-2 conv, then a stride-2 shuffle unit on its two channel halves (32 channels in and out)."""

    def __init__(self, cin: int, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = ConvModule(cin, channels, 3, 2, act=nn.ReLU)
        self.branch1 = nn.Sequential(ConvModule(half, half, 3, 2, groups=half), ConvModule(half, half, 1, act=nn.ReLU))
        self.expand_conv = ConvModule(half, channels, 1, act=nn.ReLU)
        self.depthwise_conv = ConvModule(channels, channels, 3, 2, groups=channels)
        self.linear_conv = ConvModule(channels, half, 1, act=nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat((self.branch1(x1), x2), dim=1), 2)


class SpatialWeighting(nn.Module):
    """Per-channel gates of one branch from its global average (squeeze-excitation, biased convs, no norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvModule(channels, channels // SPATIAL_RATIO, 1, act=nn.ReLU, norm=False)
        self.conv2 = ConvModule(channels // SPATIAL_RATIO, channels, 1, act=nn.Sigmoid, norm=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv2(self.conv1(F.adaptive_avg_pool2d(x, 1)))


class CrossResolutionWeighting(nn.Module):
    """Gates of every branch computed together from all branches pooled to the lowest resolution."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.channels = channels
        total = sum(channels)
        self.conv1 = ConvModule(total, total // REDUCE_RATIO, 1, act=nn.ReLU)
        self.conv2 = ConvModule(total // REDUCE_RATIO, total, 1, act=nn.Sigmoid)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        low = xs[-1].shape[-2:]
        pooled = torch.cat([F.adaptive_avg_pool2d(x, low) for x in xs[:-1]] + [xs[-1]], dim=1)
        gates = self.conv2(self.conv1(pooled)).split(self.channels, dim=1)
        return [x * F.interpolate(g, size=x.shape[-2:], mode="nearest") for x, g in zip(xs, gates, strict=True)]


class ConditionalChannelWeighting(nn.Module):
    """Shuffle block of all branches: half of each branch's channels passes through, the other half is
    weighted across resolutions, depthwise-convolved and weighted spatially; then the halves are shuffled."""

    def __init__(self, channels: list[int]):
        super().__init__()
        halves = [c // 2 for c in channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(halves)
        self.depthwise_convs = nn.ModuleList(ConvModule(c, c, 3, groups=c) for c in halves)
        self.spatial_weighting = nn.ModuleList(SpatialWeighting(c) for c in halves)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        kept, weighted = zip(*(x.chunk(2, dim=1) for x in xs), strict=True)
        weighted = self.cross_resolution_weighting(list(weighted))
        weighted = [sw(dw(x)) for x, dw, sw in zip(weighted, self.depthwise_convs, self.spatial_weighting, strict=True)]
        return [channel_shuffle(torch.cat((a, b), dim=1), 2) for a, b in zip(kept, weighted, strict=True)]


class LiteHRModule(nn.Module):
    """Blocks over all branches (``block(channels)``: Lite-HRNet's channel weighting), then HRNet's fusion
    into every branch. ``lower_from_activated``: the lower branches are fused from the stride-4 sum after its
    ReLU (Dite-HRNet's in-place ReLU) rather than before it (Lite-HRNet's)."""

    def __init__(self, channels: list[int], blocks: int, block=None, lower_from_activated: bool = False):
        super().__init__()
        block = block or ConditionalChannelWeighting
        self.layers = nn.Sequential(*(block(channels) for _ in range(blocks)))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(channels, j, i) for j in range(len(channels))) for i in range(len(channels))
        )
        self.relu = nn.ReLU()
        self.lower_from_activated = lower_from_activated

    @staticmethod
    def _fuse(channels: list[int], src: int, dst: int) -> nn.Module | None:
        if src == dst:
            return None
        if src > dst:  # 1x1 conv + BN, nearest upsampling
            return nn.Sequential(
                nn.Conv2d(channels[src], channels[dst], 1, bias=False),
                nn.BatchNorm2d(channels[dst]),
                nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest"),
            )
        steps = [depthwise_then_pointwise(channels[src], channels[src], 2, relu=True) for _ in range(dst - src - 1)]
        steps.append(depthwise_then_pointwise(channels[src], channels[dst], 2, relu=False))
        return nn.Sequential(*steps)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = self.layers(xs)
        fuse = self.fuse_layers
        # the official sum: branch 0 counted twice, in place, so that the lower branches are fused from it
        top = xs[0] * 2 + sum(fuse[0][j](xs[j]) for j in range(1, len(xs)))
        out = [self.relu(top)]
        source = out[0] if self.lower_from_activated else top
        for i in range(1, len(xs)):
            y = fuse[i][0](source) * 2
            for j in range(1, len(xs)):
                y = y + (xs[j] if j == i else fuse[i][j](xs[j]))
            out.append(self.relu(y))
        return out


class DepthwiseSeparable(nn.Module):
    """MMCV's DepthwiseSeparableConvModule as the iterative head uses it: no activation after the depthwise conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1, act=nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class IterativeHead(nn.Module):
    """From the lowest branch up: add the previous result (bilinearly upsampled) and project to the next
    branch's width; returns the stride-4 map."""

    def __init__(self, channels: list[int]):
        super().__init__()
        rev = channels[::-1]
        self.projects = nn.ModuleList(DepthwiseSeparable(c, rev[min(i + 1, len(rev) - 1)]) for i, c in enumerate(rev))

    def forward(self, xs: list[Tensor]) -> Tensor:
        last = None
        for x, project in zip(xs[::-1], self.projects, strict=True):
            if last is not None:
                x = x + F.interpolate(last, size=x.shape[-2:], mode="bilinear", align_corners=True)
            last = project(x)
        return last


class LiteHRNet(nn.Module):
    """Stem, three stages of 2, 3, 4 branches with their transitions, the iterative head: (N, 40, H/4, W/4).
    A subclass with another ``stem``, ``block`` and fusion (``lower_from_activated``) is Dite-HRNet."""

    stem_type = Stem
    block = None  # LiteHRModule's default, conditional channel weighting
    lower_from_activated = False

    def __init__(self, cfg: LiteHRNetConfig, in_channels: int = 3):
        super().__init__()
        self.stem = self.stem_type(in_channels, STEM_CHANNELS)
        previous = [STEM_CHANNELS]
        for s, modules in enumerate(cfg.num_modules):
            channels = list(BRANCH_CHANNELS[: s + 2])
            setattr(self, f"transition{s}", self._transition(previous, channels))
            setattr(
                self,
                f"stage{s}",
                nn.Sequential(*(self._module(channels, cfg.blocks_per_module) for _ in range(modules))),
            )
            previous = channels
        self.num_stages = len(cfg.num_modules)
        self.head_layer = IterativeHead(previous)
        self.out_channels = previous[0]

    def _module(self, channels: list[int], blocks: int) -> LiteHRModule:
        return LiteHRModule(channels, blocks, type(self).block, self.lower_from_activated)

    @staticmethod
    def _transition(previous: list[int], channels: list[int]) -> nn.ModuleList:
        layers = []
        for i, c in enumerate(channels):
            if i < len(previous):  # an existing branch: a width change where needed
                same = c == previous[i]
                layers.append(None if same else depthwise_then_pointwise(previous[i], c, 1, relu=True))
            else:  # a new, lower-resolution branch grown from the lowest existing one
                steps = [
                    depthwise_then_pointwise(previous[-1], previous[-1], 2, relu=True) for _ in range(i - len(previous))
                ]
                steps.append(depthwise_then_pointwise(previous[-1], c, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        xs = [self.stem(x)]
        for s in range(self.num_stages):
            transition = getattr(self, f"transition{s}")
            xs = [xs[i] if layer is None else layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{s}")(xs)
        return self.head_layer(xs)


def litehrnet_layouts():
    """MMPose 1.x's names (this suite's) and MMPose 0.x's (the official HRNet/Lite-HRNet release: keypoint_head)."""
    native, mmpose0, _original = topdown_layouts(("final_layer",), "none")  # no pre-MMPose release exists
    return native, mmpose0


def litehrnet(
    size: str, name: str, num_keypoints: int, input_size: tuple[int, int], backbone_type: type[LiteHRNet] = LiteHRNet
) -> TopDownHeatmapModel:
    check_input_size(input_size, 32, name)
    backbone = backbone_type(LITEHRNET_SIZES[size])
    model = TopDownHeatmapModel(
        backbone, HRNetHead(backbone.out_channels, num_keypoints), checkpoint_layouts=litehrnet_layouts()
    )
    return hrnet_init(model)  # MMPose's init_cfg: normal(0, 0.001) convs, unit BN


@register_model("litehrnet", tags=("table2",))
def litehrnet_18(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """Lite-HRNet-18: stages of 2, 4, 2 modules."""
    return litehrnet("18", "litehrnet_18", num_keypoints, input_size)


@register_model("litehrnet", tags=("table2",))
def litehrnet_30(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """Lite-HRNet-30: stages of 3, 8, 3 modules."""
    return litehrnet("30", "litehrnet_30", num_keypoints, input_size)


# The 384x288 model whose GFLOPs and AP Table 2's Lite-HRNet row prints (the same network, a larger input):
# table2.csv compares those cells with it (compare_with)
@register_model("litehrnet", input_size=(384, 288))
def litehrnet_30_384x288(num_keypoints: int = 17, input_size: tuple[int, int] = (384, 288)) -> TopDownHeatmapModel:
    """Lite-HRNet-30 at 384x288 (HRNet/Lite-HRNet configs/top_down/lite_hrnet/coco/litehrnet_30_coco_384x288.py)."""
    return litehrnet("30", "litehrnet_30_384x288", num_keypoints, input_size)
