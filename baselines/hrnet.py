"""HRNet (Sun et al., CVPR 2019) as in the pose configs: parallel branches fused by summation.

Module names follow the original ``pose_hrnet.py`` (``conv1``, ``layer1``, ``transition1``, ``stage2``
... ``final_layer``), which MMPose's HRNet keeps, so both releases load without renaming beyond the
``backbone.``/``head.`` prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from mamkpd.models.init import hrnet_init
from mamkpd.models.registry import register_model

from .topdown import (
    BN_MOMENTUM,
    BasicBlock,
    Bottleneck,
    TopDownHeatmapModel,
    check_input_size,
    make_res_layer,
    topdown_layouts,
)


@dataclass(frozen=True)
class HRNetConfig:
    """The pose configs: stage 1 is 4 bottlenecks of 64; stages 2-4 have 1, 4, 3 modules of 4-block
    basic-block branches whose widths double from ``width``; the last module keeps only the
    high-resolution output. ``stage_modules`` lists the modules of stages 2, 3, ... that are built:
    TokenPose's backbones stop after stage 3 (``(1, 4)``), its small stem after stage 1 (``()``)."""

    width: int = 32
    stage_modules: tuple[int, ...] = (1, 4, 3)
    blocks_per_branch: int = 4

    def channels(self, stage: int) -> list[int]:
        """Branch widths of stage 2, 3 or 4."""
        return [self.width * 2**b for b in range(stage)]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Branches of basic blocks, then every output branch sums all inputs resampled to its resolution."""

    def __init__(self, in_channels: list[int], channels: list[int], num_blocks: int, multi_scale_output: bool):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            make_res_layer(BasicBlock, in_channels[i], channels[i], num_blocks) for i in range(n)
        )
        self.fuse_layers = nn.ModuleList()
        for i in range(n if multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:  # lower resolution: 1x1 conv then nearest upsampling (no parameters)
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False),
                            nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:  # higher resolution: i - j strided 3x3 convs, ReLU between them but not after the last
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = list(channels)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        outs = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, fuse in enumerate(row):
                if j != i:
                    y = y + fuse(xs[j])
            outs.append(self.relu(y))
        return outs


class HRNet(nn.Module):
    """(N, 3, H, W) -> the high-resolution branch (N, width, H/4, W/4) of the last stage built (stage 1's
    256 channels when no later stage is)."""

    def __init__(self, cfg: HRNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_res_layer(Bottleneck, 64, 64, 4)
        previous = [64 * Bottleneck.expansion]
        self.stages = tuple(range(2, 2 + len(cfg.stage_modules)))
        for stage, num_modules in zip(self.stages, cfg.stage_modules, strict=True):
            channels = cfg.channels(stage)
            self.add_module(f"transition{stage - 1}", self._transition(previous, channels))
            modules = []
            for m in range(num_modules):
                last = stage == self.stages[-1] and m == num_modules - 1
                modules.append(
                    HighResolutionModule(channels, channels, cfg.blocks_per_branch, multi_scale_output=not last)
                )
            self.add_module(f"stage{stage}", nn.Sequential(*modules))
            previous = channels
        self.out_channels = previous[0]

    @staticmethod
    def _transition(previous: list[int], channels: list[int]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, c in enumerate(channels):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], c, 3, 1, relu=True) if previous[i] != c else None)
            else:  # a new, lower-resolution branch grown from the lowest existing one
                steps = [_conv_bn(previous[-1], previous[-1], 3, 2, relu=True) for _ in range(i - len(previous))]
                steps.append(_conv_bn(previous[-1], c, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return layers

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for stage in self.stages:
            transition = getattr(self, f"transition{stage - 1}")
            # existing branches pass through (or get a width change); new ones grow from the lowest one
            xs = [xs[i] if layer is None else layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        return xs[0]


def hrnet(
    width: int, name: str, num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)
) -> TopDownHeatmapModel:
    check_input_size(input_size, 32, name)
    backbone = HRNet(HRNetConfig(width=width))
    head = HRNetHead(backbone.out_channels, num_keypoints)
    model = TopDownHeatmapModel(
        backbone,
        head,
        checkpoint_layouts=topdown_layouts(("final_layer",), "original HRNet (pose_hrnet)"),
    )
    return hrnet_init(model)  # HRNet's init_weights, for training from scratch


class HRNetHead(nn.Module):
    """The pose HRNet's head: one 1x1 conv on the high-resolution branch (``final_layer``)."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(x)


@register_model("hrnet", tags=("table2",))
def hrnet_w32(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """HRNet-W32 (pose_hrnet_w32)."""
    return hrnet(32, "hrnet_w32", num_keypoints, input_size)


@register_model("hrnet", tags=("table2",))
def hrnet_w48(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """HRNet-W48 (pose_hrnet_w48)."""
    return hrnet(48, "hrnet_w48", num_keypoints, input_size)
