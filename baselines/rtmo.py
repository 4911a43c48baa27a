"""RTMO (Lu et al., CVPR 2024): one-stage multi-person pose with a dynamic coordinate classifier.

CSPDarknet (YOLOX) backbone, the hybrid encoder neck of RT-DETR, and the RTMO head (YOLO-style dense
classification / box / visibility branches plus the DCC, which turns each detection's pose vector into
1-D x/y heatmaps over bins placed dynamically inside its box). Module names are MMPose 1.x's
(``backbone.stage1.0.conv``, ``neck.encoder.0.layers.0.self_attn.attn.in_proj_weight``,
``head.head_module.conv_cls``, ``head.dcc.gau``), so the released checkpoints load as they are.

One sample is a whole 640x640 image, not a person crop: ``forward`` is the dense network pass (what
params, GFLOPs and FPS measure); :meth:`RTMO.decode` turns its outputs into people (score threshold
0.1, box NMS 0.65, DCC on the survivors), as MMPose's ``RTMOHead.predict`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.codecs.letterbox import Placement, WholeImageInput
from mamkpd.models.checkpoint import KeyLayout
from mamkpd.models.registry import check_input_size, register_model

from .layers import ConvModule

INPUT_SIZE = (640, 640)
STRIDES = (16, 32)  # the head's feature levels
BBOX_PADDING = 1.25  # box -> DCC bin range


def silu_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> ConvModule:
    """ConvModule with PyTorch's default BN and SiLU: RT-DETR's neck here, every conv of RTMPose's CSPNeXt."""
    return ConvModule(cin, cout, kernel, stride, groups, act=nn.SiLU)


def yolox_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> ConvModule:
    """ConvModule with YOLOX's BN (momentum 0.03, eps 1e-3) and SiLU, used in the backbone and head."""
    return ConvModule(cin, cout, kernel, stride, groups, act=nn.SiLU, bn_eps=1e-3, bn_momentum=0.03)


# ----------------------------------------------------------------------------------------- backbone
class Focus(nn.Module):
    """Space-to-depth (2x2 pixels -> 4x channels) then a 3x3 conv."""

    def __init__(self, cout: int):
        super().__init__()
        self.conv = yolox_conv(12, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class DarknetBottleneck(nn.Module):
    def __init__(self, channels: int, add_identity: bool):
        super().__init__()
        self.conv1 = yolox_conv(channels, channels, 1)
        self.conv2 = yolox_conv(channels, channels, 3)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, num_blocks: int, add_identity: bool):
        super().__init__()
        mid = cout // 2
        self.main_conv = yolox_conv(cin, mid, 1)
        self.short_conv = yolox_conv(cin, mid, 1)
        self.final_conv = yolox_conv(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*(DarknetBottleneck(mid, add_identity) for _ in range(num_blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1))


class SPPBottleneck(nn.Module):
    """1x1 conv to half width, max pools of several sizes concatenated, 1x1 conv back; ``conv`` builds the
    conv-BN-SiLU modules (YOLOX's BN here, PyTorch's default BN in RTMPose's CSPNeXt)."""

    def __init__(
        self,
        channels: int,
        kernel_sizes: tuple[int, ...] = (5, 9, 13),
        conv: Callable[[int, int, int], nn.Module] = yolox_conv,
    ):
        super().__init__()
        mid = channels // 2
        self.conv1 = conv(channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = conv(mid * (len(kernel_sizes) + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))


class CSPDarknet(nn.Module):
    """YOLOX's P5 CSPDarknet; returns the stride 8, 16 and 32 features."""

    # in, out, blocks, shortcut in the blocks, SPP
    ARCH = (
        (64, 128, 3, True, False),
        (128, 256, 9, True, False),
        (256, 512, 9, True, False),
        (512, 1024, 3, False, True),
    )

    def __init__(self, widen: float, deepen: float):
        super().__init__()
        self.stem = Focus(int(64 * widen))
        for i, (cin, cout, blocks, shortcut, spp) in enumerate(self.ARCH):
            cin, cout = int(cin * widen), int(cout * widen)
            layers: list[nn.Module] = [yolox_conv(cin, cout, 3, 2)]
            if spp:
                layers.append(SPPBottleneck(cout))
            layers.append(CSPLayer(cout, cout, max(round(blocks * deepen), 1), shortcut))
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        self.out_channels = [int(c * widen) for c in (256, 512, 1024)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stage2(self.stage1(self.stem(x)))
        c3 = x
        c4 = self.stage3(c3)
        return c3, c4, self.stage4(c4)


# --------------------------------------------------------------------------------------------- neck
class SinePositionalEncoding(nn.Module):
    """MMPose's sine encoding: frequencies ``temperature ** (i / (C/2))`` kept as the buffer ``dim_t``."""

    def __init__(self, out_channels: int, temperature: float):
        super().__init__()
        half = out_channels // 2
        self.register_buffer("dim_t", temperature ** (torch.arange(half, dtype=torch.float32) / half))

    def encode(self, position: Tensor) -> Tensor:
        """(...,) positions -> (..., out_channels): cos then sin of position / dim_t."""
        freq = position.unsqueeze(-1) / self.dim_t
        return torch.cat((freq.cos(), freq.sin()), dim=-1)

    def grid(self, h: int, w: int) -> Tensor:
        """(h*w, 2*out_channels): the row encoding then the column encoding of each cell, row-major."""
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=self.dim_t.device),
            torch.arange(w, dtype=torch.float32, device=self.dim_t.device),
            indexing="ij",
        )
        return torch.cat((self.encode(ys.flatten()), self.encode(xs.flatten())), dim=-1)


class MultiheadAttention(nn.Module):
    """``torch.nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``out_proj``) written out as
    matmuls, so that fvcore counts them (it skips PyTorch's fused attention kernel)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        b, n, c = query.shape
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        heads = lambda t: t.reshape(b, -1, self.num_heads, c // self.num_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(F.linear(query, wq, bq)), heads(F.linear(key, wk, bk)), heads(F.linear(value, wv, bv))
        attn = (q * (c // self.num_heads) ** -0.5) @ k.transpose(-2, -1)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class SelfAttention(nn.Module):
    """MMCV's attention wrapper: position added to query and key, residual added after."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = MultiheadAttention(dim, num_heads)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        return x + self.attn(x + pos, x + pos, x)


class FFN(nn.Module):
    """MMCV's FFN: Linear, GELU, Linear, residual (``layers.0.0``, ``layers.1``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU()), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class EncoderLayer(nn.Module):
    """DETR encoder layer, post-norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads)
        self.ffn = FFN(dim, ffn_dim)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = self.norms[0](self.self_attn(x, pos))
        return self.norms[1](self.ffn(x))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return x


class RepVGGBlock(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN, summed, SiLU (no identity branch)."""

    def __init__(self, channels: int):
        super().__init__()
        self.branch_3x3 = ConvModule(channels, channels, 3)
        self.branch_1x1 = ConvModule(channels, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch_3x3(x) + self.branch_1x1(x))


class CSPRepLayer(nn.Module):
    def __init__(self, cin: int, cout: int, num_blocks: int, widen: float):
        super().__init__()
        hidden = int(cout * widen)
        self.conv1 = silu_conv(cin, hidden, 1)
        self.conv2 = silu_conv(cin, hidden, 1)
        self.bottlenecks = nn.Sequential(*(RepVGGBlock(hidden) for _ in range(num_blocks)))
        self.conv3 = silu_conv(hidden, cout, 1) if hidden != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class ChannelMapper(nn.Module):
    """1x1 conv + BN per level, no activation (``convs.N``)."""

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return [conv(f) for conv, f in zip(self.convs, feats, strict=True)]


class HybridEncoder(nn.Module):
    """RT-DETR's neck: a transformer encoder on the stride-32 map, then FPN and PAN of CSPRep layers;
    outputs the stride 16 and 32 levels, projected to the head's width."""

    def __init__(
        self,
        in_channels: list[int],
        widen: float,
        deepen: float,
        out_channels: int,
        hidden: int = 256,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        pe_temperature: float = 10000.0,
    ):
        super().__init__()
        n = len(in_channels)
        self.hidden = hidden
        self.input_proj = nn.ModuleList(ConvModule(c, hidden, 1) for c in in_channels)
        self.encoder = nn.ModuleList([Encoder(1, hidden, num_heads, ffn_dim)])
        self.sincos_pos_enc = SinePositionalEncoding(hidden // 2, pe_temperature)
        blocks = round(3 * deepen)
        self.lateral_convs = nn.ModuleList(silu_conv(hidden, hidden, 1) for _ in range(n - 1))
        self.fpn_blocks = nn.ModuleList(CSPRepLayer(2 * hidden, hidden, blocks, widen) for _ in range(n - 1))
        self.downsample_convs = nn.ModuleList(silu_conv(hidden, hidden, 3, 2) for _ in range(n - 1))
        self.pan_blocks = nn.ModuleList(CSPRepLayer(2 * hidden, hidden, blocks, widen) for _ in range(n - 1))
        self.projector = ChannelMapper([hidden, hidden], out_channels)

    def forward(self, feats: tuple[Tensor, ...]) -> list[Tensor]:
        proj = [p(f) for p, f in zip(self.input_proj, feats, strict=True)]
        b, c, h, w = proj[-1].shape
        tokens = proj[-1].flatten(2).transpose(1, 2)
        tokens = self.encoder[0](tokens, self.sincos_pos_enc.grid(h, w).unsqueeze(0))
        proj[-1] = tokens.transpose(1, 2).reshape(b, c, h, w)
        # top-down FPN: from the coarsest level towards the finest
        inner = [proj[-1]]
        for k, idx in enumerate(range(len(proj) - 1, 0, -1)):
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[k](torch.cat((up, proj[idx - 1]), dim=1)))
        # bottom-up PAN
        outs = [inner[0]]
        for k in range(len(proj) - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat((down, inner[k + 1]), dim=1)))
        return self.projector(outs[1:])  # output_indices [1, 2]: strides 16 and 32


# --------------------------------------------------------------------------------------------- head
class HeadModule(nn.Module):
    """Per level: the input splits into a classification half and a pose half; 2 convs -> score,
    4 (grouped) convs -> box, keypoint visibility, pose vector (and the training-only proxy offsets)."""

    def __init__(
        self,
        in_channels: int,
        widen: float,
        num_keypoints: int,
        pose_vec_channels: int,
        num_groups: int = 8,
        channels_per_group: int = 36,
        stacked_convs: int = 2,
    ):
        super().__init__()
        cin, cls_ch = int(in_channels * widen), int(256 * widen)
        pose_ch = num_groups * int(channels_per_group * widen)
        levels = range(len(STRIDES))
        self.conv_cls = nn.ModuleList(
            nn.Sequential(*(yolox_conv(cin if i == 0 else cls_ch, cls_ch, 3) for i in range(stacked_convs)))
            for _ in levels
        )
        self.out_cls = nn.ModuleList(nn.Conv2d(cls_ch, 1, 1) for _ in levels)
        self.conv_pose = nn.ModuleList(
            nn.Sequential(
                *(
                    yolox_conv(cin if i == 0 else pose_ch, pose_ch, 3, groups=1 if i == 0 else num_groups)
                    for i in range(2 * stacked_convs)
                )
            )
            for _ in levels
        )
        self.out_bbox = nn.ModuleList(nn.Conv2d(pose_ch, 4, 1) for _ in levels)
        self.out_kpt_reg = nn.ModuleList(nn.Conv2d(pose_ch, 2 * num_keypoints, 1) for _ in levels)
        self.out_kpt_vis = nn.ModuleList(nn.Conv2d(pose_ch, num_keypoints, 1) for _ in levels)
        self.out_pose = nn.ModuleList(nn.Conv2d(pose_ch, pose_vec_channels, 1) for _ in levels)
        prior = -math.log((1 - 0.01) / 0.01)  # score bias for a 1% prior, as MMPose initialises it
        for conv in self.out_cls:
            nn.init.constant_(conv.bias, prior)

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], ...]:
        cls, bbox, vis, pose = [], [], [], []
        for i, x in enumerate(feats):
            cls_feat, reg_feat = x.split(x.shape[1] // 2, dim=1)
            cls.append(self.out_cls[i](self.conv_cls[i](cls_feat)))
            reg_feat = self.conv_pose[i](reg_feat)
            bbox.append(self.out_bbox[i](reg_feat))
            vis.append(self.out_kpt_vis[i](reg_feat))
            pose.append(self.out_pose[i](reg_feat))
        return cls, bbox, vis, pose


class ScaleNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        # the L2 norm as pow/sum/sqrt: element-wise ops the complexity count knows to be free (RTMPose's head
        # runs it in the forward pass; fvcore has no handle for linalg_vector_norm)
        norm = x.pow(2).sum(-1, keepdim=True).sqrt() * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class ChannelWiseScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Scale(nn.Module):
    """A learnable scalar (MMCV's ``Scale``)."""

    def __init__(self, value: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class GAUEncoder(nn.Module):
    """Gated attention unit over the keypoint tokens (MMPose's ``RTMCCBlock``, self-attention, no relative
    bias), with an optional additive keypoint position encoding (RTMO's DCC; RTMPose's head has none)."""

    def __init__(self, dim: int, expansion: int = 2, s: int = 128):
        super().__init__()
        self.e, self.s = dim * expansion, s
        self.uv = nn.Linear(dim, 2 * self.e + s, bias=False)
        self.o = nn.Linear(self.e, dim, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, s))
        self.beta = nn.Parameter(torch.rand(2, s))
        self.ln = ScaleNorm(dim)
        self.res_scale = ChannelWiseScale(dim)
        nn.init.xavier_uniform_(self.uv.weight)

    def forward(self, x: Tensor, pos_enc: Tensor | None = None) -> Tensor:
        u, v, base = F.silu(self.uv(self.ln(x))).split([self.e, self.e, self.s], dim=-1)
        q = base * self.gamma[0] + self.beta[0]
        k = base * self.gamma[1] + self.beta[1]
        if pos_enc is not None:
            q, k = q + pos_enc, k + pos_enc
        kernel = F.relu(q @ k.transpose(-1, -2) / math.sqrt(self.s)).pow(2)
        return self.res_scale(x) + self.o(u * (kernel @ v))


def _dcc_softmax(logits: Tensor) -> Tensor:
    """The official DCC's softmax: logits clamped to +-5e4, exp(x - max) / (sum + 1e-8)."""
    x = logits.clamp(-5e4, 5e4)
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / (e.sum(-1, keepdim=True) + 1e-8)


class DCC(nn.Module):
    """Dynamic coordinate classifier: pose vector -> per-keypoint features -> 1-D x/y heatmaps over bins
    spread across the (padded) box, encoded with sine features; keypoints are the heatmaps' expectation."""

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        feat_channels: int = 128,
        num_bins: tuple[int, int] = (192, 256),
        spe_channels: int = 128,
        spe_temperature: float = 300.0,
    ):
        super().__init__()
        self.num_keypoints, self.feat_channels = num_keypoints, feat_channels
        self.spe = SinePositionalEncoding(spe_channels, spe_temperature)
        self.gau = GAUEncoder(feat_channels)
        self.pos_enc = nn.Parameter(torch.randn(num_keypoints, self.gau.s))
        self.pose_to_kpts = nn.Sequential(
            nn.Linear(in_channels, feat_channels * num_keypoints), nn.BatchNorm1d(feat_channels * num_keypoints)
        )
        self.x_fc = nn.Linear(spe_channels, feat_channels)
        self.y_fc = nn.Linear(spe_channels, feat_channels)
        self.sigma_fc = nn.Sequential(nn.Linear(in_channels, num_keypoints), nn.Sigmoid(), Scale(0.1))
        self.register_buffer("x_bins", torch.linspace(-0.5, 0.5, num_bins[0]))
        self.register_buffer("y_bins", torch.linspace(-0.5, 0.5, num_bins[1]))

    def forward(self, pose_vecs: Tensor, bbox_cs: Tensor, grids: Tensor) -> Tensor:
        """(M, C) pose vectors, (M, 4) box centre+size, (M, 2) grid points -> (M, K, 2) keypoints."""
        center, scale = bbox_cs.split(2, dim=-1)
        x_bins = self.x_bins * scale[:, :1] + center[:, :1]  # (M, Bx), absolute input pixels
        y_bins = self.y_bins * scale[:, 1:] + center[:, 1:]
        # bins are encoded relative to the grid point that predicted them
        x_enc = self.x_fc(self.spe.encode(x_bins - grids[:, :1]))  # (M, Bx, F)
        y_enc = self.y_fc(self.spe.encode(y_bins - grids[:, 1:]))
        kpt = self.pose_to_kpts(pose_vecs).reshape(-1, self.num_keypoints, self.feat_channels)
        kpt = self.gau(kpt, self.pos_enc)
        x_prob = _dcc_softmax(kpt @ x_enc.transpose(1, 2))  # (M, K, Bx)
        y_prob = _dcc_softmax(kpt @ y_enc.transpose(1, 2))
        x = (x_prob * x_bins.unsqueeze(1)).sum(-1)
        y = (y_prob * y_bins.unsqueeze(1)).sum(-1)
        return torch.stack((x, y), dim=-1)


class RTMOHead(nn.Module):
    def __init__(self, widen: float, num_keypoints: int, pose_vec_channels: int):
        super().__init__()
        self.head_module = HeadModule(256, widen, num_keypoints, pose_vec_channels)
        self.dcc = DCC(pose_vec_channels, num_keypoints)


# -------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class RTMOConfig:
    widen: float
    deepen: float
    neck_out: int  # projector width = 2 x the head's per-branch width
    pose_vec_channels: int


RTMO_SIZES = {
    "s": RTMOConfig(0.5, 0.33, 256, 256),
    "m": RTMOConfig(0.75, 0.67, 384, 384),
    "l": RTMOConfig(1.0, 1.0, 512, 512),
}


def _priors(feat_sizes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Grid points (P, 2) in input pixels and their strides (P,), level by level, row-major.

    The official configs' ``MlvlPointGenerator(centralize_points=True)``: x * stride + (stride - 1) / 2,
    the centre of the cell's pixels in pixel-index coordinates (not (x + 0.5) * stride).
    """
    points, strides = [], []
    for (h, w), s in zip(feat_sizes, STRIDES, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        offset = (s - 1) / 2.0
        points.append(torch.stack((xs.flatten() * s + offset, ys.flatten() * s + offset), dim=-1).float())
        strides.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(points), torch.cat(strides)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix of xyxy boxes (N, 4) x (M, 4)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-6)


def nms(boxes: Tensor, scores: Tensor, iou_thr: float) -> Tensor:
    """Greedy NMS: indices kept, by descending score; a box is suppressed when its IoU with a kept,
    higher-scoring box exceeds ``iou_thr``."""
    order = scores.argsort(descending=True)
    iou = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thr
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


class RTMO(nn.Module):
    """(N, 3, 640, 640) raw BGR image -> dense predictions over the stride-16 and -32 grid cells:
    ``(scores (N, P, 1), boxes (N, P, 4), keypoint visibility (N, P, K), pose vectors (N, P, C))``
    as logits / raw offsets; :meth:`decode` turns them into people."""

    sample = "whole image"
    # MMPose's BottomupResize: one bilinear warp to 640x640, centred, raw BGR, padding 114
    whole_image_input = WholeImageInput(resampling="affine", channels="bgr", pad_value=114.0)

    def __init__(
        self, cfg: RTMOConfig, num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE, name: str = "RTMO"
    ):
        super().__init__()
        self.input_size = check_input_size(input_size, 32, name)  # the whole image, down to stride 32
        self.num_keypoints = num_keypoints
        self.backbone = CSPDarknet(cfg.widen, cfg.deepen)
        self.neck = HybridEncoder(self.backbone.out_channels, cfg.widen, cfg.deepen, cfg.neck_out)
        self.head = RTMOHead(cfg.widen, num_keypoints, cfg.pose_vec_channels)
        self.checkpoint_layouts = (
            KeyLayout(
                "mmpose1",
                "MMPose 1.x RTMO release: backbone.*, neck.*, head.* (loss buffers dropped)",
                drop=(r"^data_preprocessor\.", r"^head\.loss_", r"^head\.assigner\."),
            ),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        levels = self.head.head_module(self.neck(self.backbone(x)))
        return tuple(torch.cat([t.flatten(2) for t in level], dim=2).transpose(1, 2) for level in levels)

    @torch.no_grad()
    def decode(
        self, outputs: tuple[Tensor, Tensor, Tensor, Tensor], score_thr: float = 0.1, nms_thr: float = 0.65
    ) -> list[dict[str, Tensor]]:
        """People per image, in input pixels: ``bboxes`` (M, 4) xyxy clipped to the input, ``scores``
        (M,), ``keypoints`` (M, K, 2), ``keypoint_scores`` (M, K)."""
        cls, bbox, vis, pose = outputs
        h, w = self.input_size
        sizes = [(h // s, w // s) for s in STRIDES]
        if cls.shape[1] != sum(a * b for a, b in sizes):
            raise ValueError(
                f"outputs have {cls.shape[1]} grid cells; input size {self.input_size} gives "
                f"{sum(a * b for a, b in sizes)}"
            )
        priors, strides = _priors(sizes, cls.device)
        xy = bbox[..., :2] * strides[:, None] + priors
        wh = bbox[..., 2:].exp() * strides[:, None]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=-1)
        scores = cls.sigmoid().amax(-1)
        people = []
        for i in range(cls.shape[0]):
            idx = (scores[i] > score_thr).nonzero().flatten()
            idx = idx[nms(boxes[i, idx], scores[i, idx], nms_thr)] if len(idx) else idx
            b = boxes[i, idx]
            bbox_cs = torch.cat(((b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) * BBOX_PADDING), dim=-1)
            keypoints = (
                self.head.dcc(pose[i, idx], bbox_cs, priors[idx])
                if len(idx)
                else b.new_zeros((0, self.num_keypoints, 2))
            )
            b = torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), -1)
            people.append(
                {
                    "bboxes": b,
                    "scores": scores[i, idx],
                    "keypoints": keypoints,
                    "keypoint_scores": vis[i, idx].sigmoid(),
                }
            )
        return people

    def predict(
        self, x: Tensor, score_thr: float = 0.1, nms_thr: float = 0.65, placements: Sequence[Placement] | None = None
    ) -> list[dict[str, Tensor]]:
        """``decode(forward(x))`` in eval mode; with each image's letterbox ``placements``, in image pixels."""
        people = self.decode(self(x), score_thr, nms_thr)
        for p, placement in zip(people, placements, strict=True) if placements is not None else ():
            p["keypoints"] = placement.to_image(p["keypoints"])
            p["bboxes"] = placement.to_image(p["bboxes"].unflatten(-1, (2, 2))).flatten(-2)
        return people


# One explicit factory per size: a whole 640x640 image per sample, decoded by RTMO.decode.
_REGISTRATION = dict(input_size=INPUT_SIZE, whole_image=True, codec="rtmo", tags=("table2", "one-stage"))


@register_model("rtmo", **_REGISTRATION)
def rtmo_s(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> RTMO:
    """RTMO-S (MMPose config rtmo-s, 640x640 whole image)."""
    return RTMO(RTMO_SIZES["s"], num_keypoints, input_size, "rtmo_s")


@register_model("rtmo", **_REGISTRATION)
def rtmo_m(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> RTMO:
    """RTMO-M (MMPose config rtmo-m, 640x640 whole image)."""
    return RTMO(RTMO_SIZES["m"], num_keypoints, input_size, "rtmo_m")


@register_model("rtmo", **_REGISTRATION)
def rtmo_l(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> RTMO:
    """RTMO-L (MMPose config rtmo-l, 640x640 whole image)."""
    return RTMO(RTMO_SIZES["l"], num_keypoints, input_size, "rtmo_l")
