"""Shared pieces of the top-down heatmap baselines: ResNet blocks, the backbone+head model and the
checkpoint layouts their releases use."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mamkpd.models import check_input_size  # noqa: F401  (the factories of this package import it from here)
from mamkpd.models.checkpoint import KeyLayout, prefix_rules

# BN momentum of the original SimpleBaseline / HRNet code (PyTorch's default too).
BN_MOMENTUM = 0.1


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs); names as in torchvision, SimpleBaseline, HRNet and MMPose."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with the stride, 1x1 x4), torchvision/SimpleBaseline/HRNet names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_res_layer(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int = 1
) -> nn.Sequential:
    """``blocks`` residual blocks; the first projects the shortcut (``downsample.0/1``) when needed."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def topdown_layouts(
    original_head_modules: Sequence[str], original_repo: str, original_channels: str = "rgb"
) -> tuple[KeyLayout, ...]:
    """Layouts of a ``backbone`` + ``head`` top-down model as the zoos ship it.

    MMPose 1.x uses ``backbone.*`` / ``head.*``, this suite's own names (the ``native`` layout); MMPose
    0.x (and the official ViTPose release, built on it) ``backbone.*`` / ``keypoint_head.*``; the original
    SimpleBaseline and HRNet repositories put everything at the top level, the head modules being
    ``original_head_modules``. MMPose trains on RGB images; the original repositories' channel order is
    ``original_channels`` (their ``DATASET.COLOR_RGB``).
    """
    head = "|".join(original_head_modules)
    return (
        KeyLayout("native", "this suite's names, which are MMPose 1.x's: backbone.*, head.*", input_channels="rgb"),
        KeyLayout(
            "mmpose0",
            "MMPose 0.x: backbone.*, keypoint_head.*",
            rules=prefix_rules([("keypoint_head.", "head.")]),
            input_channels="rgb",
        ),
        KeyLayout(
            "original",
            f"{original_repo}: no prefix, head modules {', '.join(original_head_modules)}",
            rules=((rf"^(({head})\.)", r"head.\1"), (r"^", "backbone.")),
            input_channels=original_channels,
        ),
    )


class TopDownHeatmapModel(nn.Module):
    """``backbone`` then ``head``: a person crop (N, 3, H, W) -> heatmaps (N, K, H/4, W/4).

    ``checkpoint_layouts`` lists the published key layouts :func:`mamkpd.load_weights` accepts.
    ``input_channels`` is the channel order of the images it expects ("rgb"; a checkpoint's layout can
    say otherwise when it is loaded).
    """

    input_channels = "rgb"

    def __init__(self, backbone: nn.Module, head: nn.Module, checkpoint_layouts: Sequence[KeyLayout]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.checkpoint_layouts = tuple(checkpoint_layouts)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))
