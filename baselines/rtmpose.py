"""RTMPose (Jiang et al., 2023): a real-time top-down model with a coordinate-classification head.

Not in the paper's tables; it is the top-down model real-time users deploy, so the suite measures it beside
MamKPD. A CSPNeXt backbone (RTMDet's: CSP stages of 3x3 + depthwise 5x5 blocks, channel attention, SPP in
the last stage; only the stride-32 map is used) feeds the RTMCC head: a 7x7 conv to one map per keypoint,
each map flattened into a token, ScaleNorm + Linear to 256, a gated attention unit across the keypoint
tokens, and two linear classifiers over ``2 * W`` x-bins and ``2 * H`` y-bins (SimCC, split ratio 2). The
bins are decoded by :class:`mamkpd.codecs.SimCCLabel`.

Sizes are the MMPose 1.3.2 configs ``projects/rtmpose/rtmpose/body_2d_keypoint/rtmpose-{t,s,m,l}_8xb256-420e_
coco-256x192.py`` (also ``configs/body_2d_keypoint/rtmpose/coco/``); module names are MMPose's and MMDetection's
(``backbone.stem.0.conv``, ``backbone.stage4.2.blocks.0.conv2.depthwise_conv.bn``, ``head.final_layer``,
``head.mlp.1``, ``head.gau.uv``, ``head.cls_x``), so the released checkpoints load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mamkpd.models.checkpoint import KeyLayout
from mamkpd.models.registry import check_input_size, register_model

from .rtmo import GAUEncoder, ScaleNorm, SPPBottleneck, silu_conv

STRIDE = 32  # the head reads the last backbone stage
SIMCC_SPLIT_RATIO = 2.0  # bins per input pixel
FINAL_LAYER_KERNEL = 7
GAU_DIM = 256  # gau_cfg hidden_dims (s = 128, expansion 2, SiLU, no relative bias, no rotary encoding)


# ----------------------------------------------------------------------------------------- backbone
class DepthwiseSeparableConv(nn.Module):
    """MMCV's DepthwiseSeparableConvModule: depthwise conv-BN-SiLU then pointwise conv-BN-SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.depthwise_conv = silu_conv(cin, cin, kernel, groups=cin)
        self.pointwise_conv = silu_conv(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 conv, depthwise-separable 5x5 conv, identity added when asked."""

    def __init__(self, channels: int, add_identity: bool):
        super().__init__()
        self.conv1 = silu_conv(channels, channels, 3)
        self.conv2 = DepthwiseSeparableConv(channels, channels, 5)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Global average pool, 1x1 conv with bias, hard sigmoid, rescale the channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1)
        self.act = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPNeXtLayer(nn.Module):
    """CSP layer of CSPNeXt blocks (expand ratio 0.5), channel attention on the concatenation."""

    def __init__(self, channels: int, num_blocks: int, add_identity: bool):
        super().__init__()
        mid = channels // 2
        self.main_conv = silu_conv(channels, mid, 1)
        self.short_conv = silu_conv(channels, mid, 1)
        self.final_conv = silu_conv(2 * mid, channels, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)))
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        return self.final_conv(self.attention(x))


class CSPNeXt(nn.Module):
    """RTMDet's P5 CSPNeXt with PyTorch's default BN (the configs' SyncBN); returns the stride-32 map."""

    # in, out, blocks, identity in the blocks, SPP
    ARCH = (
        (64, 128, 3, True, False),
        (128, 256, 6, True, False),
        (256, 512, 6, True, False),
        (512, 1024, 3, False, True),
    )

    def __init__(self, widen: float, deepen: float):
        super().__init__()
        stem = int(64 * widen)
        half = int(64 * widen // 2)
        self.stem = nn.Sequential(silu_conv(3, half, 3, 2), silu_conv(half, half, 3), silu_conv(half, stem, 3))
        for i, (cin, cout, blocks, identity, spp) in enumerate(self.ARCH):
            cin, cout = int(cin * widen), int(cout * widen)
            layers: list[nn.Module] = [silu_conv(cin, cout, 3, 2)]
            if spp:
                layers.append(SPPBottleneck(cout, conv=silu_conv))
            layers.append(CSPNeXtLayer(cout, max(round(blocks * deepen), 1), identity))
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        self.out_channels = int(self.ARCH[-1][1] * widen)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            x = stage(x)
        return x


# --------------------------------------------------------------------------------------------- head
class RTMCCHead(nn.Module):
    """Stride-32 features (N, C, H/32, W/32) -> SimCC vectors ``(pred_x (N, K, 2W), pred_y (N, K, 2H))``."""

    def __init__(self, in_channels: int, num_keypoints: int, input_size: tuple[int, int]):
        super().__init__()
        h, w = input_size
        tokens = (h // STRIDE) * (w // STRIDE)
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, FINAL_LAYER_KERNEL, padding=FINAL_LAYER_KERNEL // 2)
        self.mlp = nn.Sequential(ScaleNorm(tokens), nn.Linear(tokens, GAU_DIM, bias=False))
        self.gau = GAUEncoder(GAU_DIM)
        self.cls_x = nn.Linear(GAU_DIM, int(w * SIMCC_SPLIT_RATIO), bias=False)
        self.cls_y = nn.Linear(GAU_DIM, int(h * SIMCC_SPLIT_RATIO), bias=False)
        # RTMCCHead.default_init_cfg: conv N(0, 0.001), linear N(0, 0.01), biases 0
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)
        for linear in (self.mlp[1], self.gau.uv, self.gau.o, self.cls_x, self.cls_y):
            nn.init.normal_(linear.weight, std=0.01)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.gau(self.mlp(self.final_layer(x).flatten(2)))
        return self.cls_x(tokens), self.cls_y(tokens)


# -------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class RTMPoseConfig:
    widen: float
    deepen: float


RTMPOSE_SIZES = {
    "t": RTMPoseConfig(0.375, 0.167),
    "s": RTMPoseConfig(0.5, 0.33),
    "m": RTMPoseConfig(0.75, 0.67),
    "l": RTMPoseConfig(1.0, 1.0),
}


class RTMPose(nn.Module):
    """A person crop (N, 3, H, W) -> SimCC vectors ``(pred_x (N, K, 2W), pred_y (N, K, 2H))``.

    ``input_size`` fixes the head (its Linear reads the (H/32)*(W/32) map), so it is part of the model.
    """

    input_channels = "rgb"  # MMPose's data preprocessor: bgr_to_rgb, RGB ImageNet mean/std

    def __init__(self, cfg: RTMPoseConfig, num_keypoints: int, input_size: tuple[int, int], name: str):
        super().__init__()
        self.input_size = check_input_size(input_size, STRIDE, name)
        self.backbone = CSPNeXt(cfg.widen, cfg.deepen)
        self.head = RTMCCHead(self.backbone.out_channels, num_keypoints, self.input_size)
        # the releases hold exactly these names (MMPose's data preprocessor keeps its mean/std out of the state)
        self.checkpoint_layouts = (
            KeyLayout("native", "this suite's names, which are MMPose 1.x's: backbone.*, head.*", input_channels="rgb"),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


def rtmpose(size: str, name: str, num_keypoints: int, input_size: tuple[int, int]) -> RTMPose:
    return RTMPose(RTMPOSE_SIZES[size], num_keypoints, input_size, name)


# One explicit factory per size; decoded (and flip-tested) by the SimCC codec.
@register_model("rtmpose", codec="simcc")
def rtmpose_t(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> RTMPose:
    """RTMPose-t (MMPose config rtmpose-t_8xb256-420e_coco-256x192)."""
    return rtmpose("t", "rtmpose_t", num_keypoints, input_size)


@register_model("rtmpose", codec="simcc")
def rtmpose_s(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> RTMPose:
    """RTMPose-s (MMPose config rtmpose-s_8xb256-420e_coco-256x192)."""
    return rtmpose("s", "rtmpose_s", num_keypoints, input_size)


@register_model("rtmpose", codec="simcc")
def rtmpose_m(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> RTMPose:
    """RTMPose-m (MMPose config rtmpose-m_8xb256-420e_coco-256x192)."""
    return rtmpose("m", "rtmpose_m", num_keypoints, input_size)


@register_model("rtmpose", codec="simcc")
def rtmpose_l(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> RTMPose:
    """RTMPose-l (MMPose config rtmpose-l_8xb256-420e_coco-256x192)."""
    return rtmpose("l", "rtmpose_l", num_keypoints, input_size)
