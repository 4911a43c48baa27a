"""I²R-Net (Ding et al., IJCAI 2022): an intra-human stage (HRFormer-B, one person crop at a time) and an
inter-human transformer over the features of a group of people, refining each person's heatmaps.

The first stage (``singleformer``) is HRFormer-B as the official ``lib/models/hrformer.py`` builds it: HRNet's
stem and two bottlenecks, then stages of 1, 4 and 2 modules whose branches (78, 156, 312, 624 channels) are pairs
of transformer blocks (attention inside 7x7 windows of the zero-padded map, a depthwise-conv MLP with
BatchNorm), fused HRNet-style (the last module keeps the 1/4 branch only), and a 1x1 ``keypoint_head``. Its
1/4 feature map (78 channels) is max-pooled twice (3x3, stride 2) to 1/16; the tokens of every person of a
group (``h * w`` each, 16 x 12 at 256x192) pass together through a 2-layer post-norm transformer encoder
(width 78, one head, feed-forward 192, ReLU), each person's keys restricted to the group's real people; two
stride-2 deconvolutions (BatchNorm, ReLU) bring it back to 1/4, it is added to the first stage's map and a
1x1 ``final_layer`` gives the heatmaps (N, K, H/4, W/4).

A batch is people, grouped as the official ``forward(x, pos_mask, length)`` takes them: ``lengths`` splits
the N crops, in order, into groups (the official ``length``; a short group is padded and its padding masked
out of the keys, as there). Without ``lengths`` each crop is its own group, which is what the official COCO
evaluation with detected boxes (``validate`` with ``TEST.USE_GT_BBOX`` false, the published val2017 figures)
does: ``length = [1] * N``. One sample is then one person crop, and params, GFLOPs and FPS measured on
(N, 3, H, W) are per person. (Ground-truth-box evaluation and training group an image's people: up to
``DATASET.MAX_PATCH`` = 2 nearest ones in training; the official FLOPs script counts each image's people as one
group and divides by the people.)

Module names are the official ``InterFormer``'s, so its state_dict (the released
``interformer_coco_hrt_192_p2_b12.pth``) loads strictly. Three parts of it take no part in the official
forward and are kept for the layout and the published count (43.72M), frozen as no gradient reaches them:
``multi_position_embedding`` (built from ``MULTI_POS_EMBEDDING: res``, a ResNet-18 stem, though
``USE_MULTI_POS`` is false), the windows' ``relative_position_bias_table`` (computed there, never added: the
addition is commented out in ``MHA_``), and the first stage's ``keypoint_head``, whose heatmaps only the
official training's intermediate supervision (``INTER_SUPERVISION``) reads; the suite supervises one output,
the refined heatmaps.

Test time as the official ``validate`` and ``get_final_preds``: flip test without a shift (``SHIFT_HEATMAP``
is set but never read), DARK refinement (blur kernel 11) on DarkPose's pixel-centre grid (``transforms.py``
maps boxes with the width's factor on both axes): the suite's ``darkpose`` codec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.models.checkpoint import NATIVE_LAYOUT
from mamkpd.models.init import hrnet_init
from mamkpd.models.registry import check_input_size, register_model

from .hrnet import HRNet
from .topdown import BasicBlock, Bottleneck, make_res_layer

STRIDE = 32  # HRFormer's lowest branch; the heatmaps are at 1/4
WINDOW = 7  # HRFormer's window size at every branch
LN_EPS = 1e-6  # HRFormer's transformer blocks (partial(nn.LayerNorm, eps=1e-6)); the inter-human encoder: 1e-5
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class HRFormerConfig:
    """HRFormer-B as ``hrformer.get_pose_net`` writes it: per stage, modules, branch widths and heads."""

    stem_blocks: int = 2  # stage 1: bottlenecks of 64 (256 out)
    stage_modules: tuple[int, ...] = (1, 4, 2)
    channels: tuple[int, ...] = (78, 156, 312, 624)
    heads: tuple[int, ...] = (2, 4, 8, 16)
    blocks_per_branch: int = 2
    mlp_ratio: int = 4


@dataclass(frozen=True)
class InterConfig:
    """The inter-human part of ``interformer_coco_hrt_192_p2_b12.yaml``."""

    dim: int = 78  # DIM_MODEL: the first stage's 1/4 width
    heads: int = 1  # N_HEAD
    feedforward: int = 192  # DIM_FEEDFORWARD
    layers: int = 2  # ENCODER_MULTI_LAYERS
    # max-pools before and deconvolutions after the encoder: log2(HEATMAP_SIZE / TRANS_SIZE) = 2 in both COCO
    # configs (16 x 12 tokens at 256x192, 24 x 18 at 384x288)
    resamples: int = 2


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention of (B, L, C) queries, keys and values split into ``heads`` heads (channels
    h * C/heads onward for head h); ``key_mask`` (B, L) True marks keys left out."""
    b, length, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    logits = (q * d**-0.5) @ k.transpose(-2, -1)
    if key_mask is not None:
        logits = logits.masked_fill(key_mask[:, None, None, :], float("-inf"))
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, length, c)


# ---------------------------------------------------------------------------------------- HRFormer-B
class WindowMHA(nn.Module):
    """The official ``MHA_``: separate q/k/v projections; its relative position table (and index) is built but
    never added to the logits, so it is kept frozen for the layout."""

    def __init__(self, dim: int, heads: int, window: int = WINDOW):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads), requires_grad=False)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])

    def forward(self, x: Tensor) -> Tensor:  # (B, L, C) tokens of B windows
        return self.out_proj(_attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads))


class WindowAttention(nn.Module):
    """The official ``InterlacedPoolAttention``: the map zero-padded (centred) to whole 7x7 windows, attention
    inside each window (the padding takes part as keys), padding removed."""

    def __init__(self, dim: int, heads: int, window: int = WINDOW):
        super().__init__()
        self.window = window
        self.attn = WindowMHA(dim, heads, window)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:  # (B, h * w, C)
        b, _, c = x.shape
        s = self.window
        ph, pw = -h % s, -w % s
        x = F.pad(x.view(b, h, w, c), (0, 0, pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        qh, qw = (h + ph) // s, (w + pw) // s
        windows = x.view(b, qh, s, qw, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b * qh * qw, s * s, c)
        out = self.attn(windows).view(b, qh, qw, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h + ph, w + pw, c)
        return out[:, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w].reshape(b, h * w, c)


class MlpDWBN(nn.Module):
    """1x1 conv, BN, GELU; depthwise 3x3, BN, GELU; 1x1 conv, BN, GELU (the official ``MlpDWBN``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.norm1 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM)
        self.dw3x3 = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.norm2 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.act3 = nn.GELU()
        self.norm3 = nn.BatchNorm2d(dim, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w)
        x = self.act1(self.norm1(self.fc1(x)))
        x = self.act2(self.norm2(self.dw3x3(x)))
        return self.act3(self.norm3(self.fc2(x)))


class TransformerBlock(nn.Module):
    """The official ``GeneralTransformerBlock``: pre-norm window attention and MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.attn = WindowAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MlpDWBN(dim, dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm1(t), h, w)
        t = t + self.mlp(self.norm2(t).transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return t.transpose(1, 2).reshape(b, c, h, w)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
    ]


class HRFormerModule(nn.Module):
    """Branches of transformer blocks, then HRNet's fusion with HRFormer's resampling: a lower branch through a
    1x1 conv, BN and bilinear upsampling; a higher one through (depthwise 3x3 stride-2 conv, BN, 1x1 conv, BN)
    steps, ReLU between them."""

    def __init__(self, channels: Sequence[int], heads: Sequence[int], cfg: HRFormerConfig, multi_scale_output: bool):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(TransformerBlock(c, h, cfg.mlp_ratio) for _ in range(cfg.blocks_per_branch)))
            for c, h in zip(channels, heads, strict=True)
        )
        self.fuse_layers = nn.ModuleList()
        for i in range(n if multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    up = nn.Upsample(scale_factor=2 ** (j - i), mode="bilinear", align_corners=False)
                    row.append(nn.Sequential(*_conv_bn(channels[j], channels[i], 1), up))
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        out = channels[i] if k == i - j - 1 else channels[j]
                        step = _conv_bn(channels[j], channels[j], 3, 2, groups=channels[j]) + _conv_bn(
                            channels[j], out, 1
                        )
                        steps.append(nn.Sequential(*step, *([nn.ReLU()] if k < i - j - 1 else [])))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU()

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if len(xs) == 1:
            return xs
        outs = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    up = row[j](xs[j])
                    if up.shape[-2:] != xs[i].shape[-2:]:  # the official resize to the branch's size
                        up = F.interpolate(up, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                    y = y + up
                else:
                    y = y + row[j](xs[j])
            outs.append(self.relu(y))
        return outs


class HRFormer(HRNet):
    """The official ``HRT``: (N, 3, H, W) -> the 1/4 branch of the last stage (N, 78, H/4, W/4). HRNet's stem,
    transitions and forward, HRFormer's stage-1 depth and modules."""

    def __init__(self, cfg: HRFormerConfig):
        nn.Module.__init__(self)  # HRNet's attributes, HRFormer's modules
        self.conv1, self.bn1 = _conv_bn(3, 64, 3, 2)
        self.conv2, self.bn2 = _conv_bn(64, 64, 3, 2)
        self.relu = nn.ReLU()
        self.layer1 = make_res_layer(Bottleneck, 64, 64, cfg.stem_blocks)
        previous = [64 * Bottleneck.expansion]
        self.stages = tuple(range(2, 2 + len(cfg.stage_modules)))
        for stage, modules in zip(self.stages, cfg.stage_modules, strict=True):
            channels, heads = list(cfg.channels[:stage]), list(cfg.heads[:stage])
            self.add_module(f"transition{stage - 1}", HRNet._transition(previous, channels))
            last = stage == self.stages[-1]
            built = [HRFormerModule(channels, heads, cfg, not (last and m == modules - 1)) for m in range(modules)]
            self.add_module(f"stage{stage}", nn.Sequential(*built))
            previous = channels
        self.out_channels = previous[0]


class KeypointHead(nn.Module):
    """HRFormer's ``TopDownSimpleHead`` without deconvolutions: a 1x1 ``final_layer``."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)


class SingleFormer(nn.Module):
    """The intra-human stage, the official ``HRFormer`` wrapper: ``backbone`` and its (frozen) ``keypoint_head``."""

    def __init__(self, cfg: HRFormerConfig, num_keypoints: int):
        super().__init__()
        self.backbone = HRFormer(cfg)
        self.keypoint_head = KeypointHead(self.backbone.out_channels, num_keypoints)
        self.keypoint_head.requires_grad_(False)  # intermediate supervision only; see the module docstring

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)


# ------------------------------------------------------------------------------------- inter-human part
class UnusedPositionEmbedding(nn.Module):
    """The official ``PositionEmbeddingImage(mode='res')``: a 3x3 conv from one channel, torchvision
    ResNet-18's first five children (conv, BN, ReLU, max-pool, ``layer1``) and a 3x3 conv to the model width.
    Built by the official code but unused (``USE_MULTI_POS`` false): frozen, never called."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_pre = nn.Conv2d(1, 3, 3, 1, 1, bias=False)
        self.res = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            make_res_layer(BasicBlock, 64, 64, 2),
        )
        self.conv_end = nn.Conv2d(64, dim, 3, 1, 1, bias=False)
        self.requires_grad_(False)


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (packed q/k/v ``in_proj``, ``out_proj``), written out so that
    every product is counted."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        return self.out_proj(_attend(q, k, v, self.heads, key_mask))


class EncoderLayer(nn.Module):
    """The official ``TransformerEncoderLayerDefault`` (DETR's) in its post-norm form, dropout off at test."""

    def __init__(self, cfg: InterConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg.dim, cfg.heads)
        self.linear1 = nn.Linear(cfg.dim, cfg.feedforward)
        self.linear2 = nn.Linear(cfg.feedforward, cfg.dim)
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.self_attn(x, key_mask))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class InterEncoder(nn.Module):
    """The official ``TransformerEncoderDefault``: (G, L, C) tokens of G groups through ``layers``."""

    def __init__(self, cfg: InterConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        for p in self.parameters():  # its _reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


class DeConv(nn.Module):
    """The official ``DeConv``: ``resamples`` stride-2 4x4 deconvolutions (no bias), each with BN and ReLU."""

    def __init__(self, cfg: InterConfig):
        super().__init__()
        self.deconv_layers = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(cfg.dim, cfg.dim, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cfg.dim, momentum=BN_MOMENTUM),
                nn.ReLU(),
            )
            for _ in range(cfg.resamples)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.deconv_layers:
            x = layer(x)
        return x


def _groups(lengths: Sequence[int] | None, n: int) -> list[int]:
    """Group sizes of ``n`` crops: ``lengths`` checked, or one crop per group."""
    if lengths is None:
        return [1] * n
    lengths = [int(v) for v in lengths]
    if sum(lengths) != n or min(lengths, default=0) < 1:
        raise ValueError(f"lengths must be positive group sizes adding up to the batch ({n}), got {lengths}")
    return lengths


class I2RNet(nn.Module):
    """(N, 3, H, W) person crops -> heatmaps (N, K, H/4, W/4); ``forward(x, lengths)`` groups them (see the
    module docstring)."""

    checkpoint_layouts = (NATIVE_LAYOUT,)
    input_channels = "rgb"  # DATASET.COLOR_RGB true

    def __init__(self, num_keypoints: int = 17, hrformer: HRFormerConfig = HRFormerConfig(), inter=InterConfig()):
        super().__init__()
        self.singleformer = SingleFormer(hrformer, num_keypoints)
        self.multi_position_embedding = UnusedPositionEmbedding(inter.dim)
        self.multi_global_encoder = InterEncoder(inter)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.upsample_layer = DeConv(inter)
        self.final_layer = nn.Conv2d(inter.dim, num_keypoints, 1)
        self.resamples = inter.resamples

    def forward(self, x: Tensor, lengths: Sequence[int] | None = None) -> Tensor:
        sizes = _groups(lengths, x.shape[0])
        single = self.singleformer(x)
        t = single
        for _ in range(self.resamples):
            t = self.maxpool(t)
        n, c, h, w = t.shape
        longest = max(sizes)
        tokens = t.flatten(2).transpose(1, 2)  # (N, h * w, C)
        if all(s == longest for s in sizes):
            key_mask = None
            grouped = tokens.reshape(len(sizes), longest * h * w, c)
        else:  # the official padding: empty people whose tokens no query attends to
            people = torch.zeros(len(sizes), longest, h * w, c, dtype=t.dtype, device=t.device)
            key_mask = torch.ones(len(sizes), longest, h * w, dtype=torch.bool, device=t.device)
            for g, part in enumerate(tokens.split(sizes)):
                people[g, : len(part)] = part
                key_mask[g, : len(part)] = False
            grouped, key_mask = people.flatten(1, 2), key_mask.flatten(1)
        out = self.multi_global_encoder(grouped, key_mask).view(len(sizes), longest, h * w, c)
        if key_mask is not None:
            out = torch.cat([out[g, :s] for g, s in enumerate(sizes)])
        out = out.reshape(n, h, w, c).permute(0, 3, 1, 2)
        return self.final_layer(single + self.upsample_layer(out))


def build_i2rnet(name: str, num_keypoints: int, input_size) -> I2RNet:
    """The official model; HRFormer's and the head's init for training from scratch (normal(0, 0.001) convs,
    BN 1/0; the encoder's Xavier linears). The official recipe starts the first stage from HRFormer-B's COCO
    checkpoint (``SINGLE_MODEL``)."""
    check_input_size(input_size, STRIDE, name)
    return hrnet_init(I2RNet(num_keypoints))  # convs and BN only: the encoder keeps its Xavier init


@register_model("i2rnet", codec="darkpose", tags=("table2",))
def i2rnet_hrformer_b(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> I2RNet:
    """I²R-Net with HRFormer-B as first stage (interformer_coco_hrt_192_p2_b12.yaml, 256x192)."""
    return build_i2rnet("i2rnet_hrformer_b", num_keypoints, input_size)
