"""ViTPose (Xu et al., NeurIPS 2022): a plain ViT on 16x16 patches and a light heatmap decoder.

Backbone names follow the official release (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``last_norm``),
decoders MMPose's (``head.deconv_layers``, ``head.final_layer``). The official ``pos_embed`` carries a
class-token slot that the official forward adds to every patch token; this model stores the folded
(patch tokens + slot) table and the loader folds it when it reads an official checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.models.checkpoint import KeyLayout, prefix_rules
from mamkpd.models.init import trunc_normal_init
from mamkpd.models.layers.heads import DeconvHead
from mamkpd.models.layers.ss2d import DropPath
from mamkpd.models.registry import register_model

from .topdown import TopDownHeatmapModel, check_input_size, topdown_layouts

PATCH_SIZE = 16
PATCH_PADDING = 2  # the official PatchEmbed: 4 + 2 * (ratio // 2 - 1) with ratio 1


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0  # stochastic depth of the last block, rising linearly from 0 (training only)


# drop-path rates of the official ViTPose_{small,base,large}_coco_256x192.py configs
VIT_SIZES = {
    "s": ViTConfig(384, 12, 12, drop_path_rate=0.1),
    "b": ViTConfig(768, 12, 12, drop_path_rate=0.3),
    "l": ViTConfig(1024, 24, 16, drop_path_rate=0.5),
}


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, PATCH_SIZE, PATCH_SIZE, PATCH_PADDING)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # explicit attention as in the official code (fvcore counts these matmuls; it skips fused SDPA)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """(N, 3, H, W) -> (N, C, H/16, W/16) token map; no class token."""

    def __init__(self, cfg: ViTConfig, input_size: tuple[int, int]):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.grid = (input_size[0] // PATCH_SIZE, input_size[1] // PATCH_SIZE)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], cfg.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # the official stochastic-depth rule: torch.linspace(0, drop_path_rate, depth)
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.out_channels = cfg.embed_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.last_norm(x).transpose(1, 2).reshape(n, c, h, w)


class SimpleHead(nn.Module):
    """ViTPose's simple decoder: ReLU, x4 bilinear upsampling, a 3x3 conv to heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 3, padding=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)  # TopdownHeatmapSimpleHead.init_weights
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(F.relu(x), scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.final_layer(x)


def fold_class_token_slot(value: Tensor, expected: torch.Size) -> tuple[Tensor, str]:
    """Official ViTPose ``pos_embed`` (1, 1 + N, C) -> (1, N, C) as its forward uses it: every patch
    token gets the class-token slot added (``pos_embed[:, 1:] + pos_embed[:, :1]``)."""
    if value.ndim == 3 and value.shape[1] == expected[1] + 1 and value.shape[2] == expected[2]:
        return value[:, 1:] + value[:, :1], "folded the class-token slot into the patch tokens (official ViTPose)"
    return value, "left as stored: not a class-token-slot layout"


_FOLD = {"backbone.pos_embed": fold_class_token_slot}


def vitpose_layouts() -> tuple[KeyLayout, ...]:
    """Official release (MMPose 0.x names), MMPose 1.x (mmpretrain ViT names) and this suite's own."""
    mmpose1_backbone = prefix_rules(
        [("backbone.patch_embed.projection.", "backbone.patch_embed.proj."), ("backbone.ln1.", "backbone.last_norm.")]
    ) + (
        (r"^backbone\.layers\.(\d+)\.ln1\.", r"backbone.blocks.\1.norm1."),
        (r"^backbone\.layers\.(\d+)\.ln2\.", r"backbone.blocks.\1.norm2."),
        (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"backbone.blocks.\1.mlp.fc1."),
        (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"backbone.blocks.\1.mlp.fc2."),
        (r"^backbone\.layers\.(\d+)\.attn\.", r"backbone.blocks.\1.attn."),
    )
    official = next(lay for lay in topdown_layouts((), "") if lay.name == "mmpose0")
    return (
        KeyLayout("native", "this suite's names (pos_embed already folded)", fixes=_FOLD),
        KeyLayout(
            "vitpose_official",
            "official ViTPose release: backbone.*, keypoint_head.*, pos_embed with a class-token slot",
            rules=official.rules,
            fixes=_FOLD,
        ),
        KeyLayout(
            "mmpose1",
            "MMPose 1.x: mmpretrain VisionTransformer backbone (layers.N.ln1, ffn.layers), head.*",
            rules=mmpose1_backbone,
            drop=(r"^data_preprocessor\.",),
            fixes=_FOLD,
        ),
    )


def vitpose(
    size: str, decoder: str, name: str, num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)
) -> TopDownHeatmapModel:
    input_size = check_input_size(input_size, PATCH_SIZE, name)
    backbone = trunc_normal_init(ViT(VIT_SIZES[size], input_size))  # the official backbone init_weights
    if decoder == "classic":  # two 256-wide 4x4 deconvs + 1x1
        head: nn.Module = DeconvHead(backbone.out_channels, width=256, num_deconv=2, num_keypoints=num_keypoints)
    else:
        head = SimpleHead(backbone.out_channels, num_keypoints)
    return TopDownHeatmapModel(backbone, head, checkpoint_layouts=vitpose_layouts())


# One explicit factory per registered model; the classic decoder's rows are Table 2's.
@register_model("vitpose", codec="udp")
def vitpose_s(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-S with the classic decoder."""
    return vitpose("s", "classic", "vitpose_s", num_keypoints, input_size)


@register_model("vitpose", codec="udp", tags=("table2",))
def vitpose_b(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-B with the classic decoder."""
    return vitpose("b", "classic", "vitpose_b", num_keypoints, input_size)


@register_model("vitpose", codec="udp", tags=("table2",))
def vitpose_l(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-L with the classic decoder."""
    return vitpose("l", "classic", "vitpose_l", num_keypoints, input_size)


@register_model("vitpose", codec="udp")
def vitpose_s_simple(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-S with the simple decoder."""
    return vitpose("s", "simple", "vitpose_s_simple", num_keypoints, input_size)


@register_model("vitpose", codec="udp")
def vitpose_b_simple(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-B with the simple decoder."""
    return vitpose("b", "simple", "vitpose_b_simple", num_keypoints, input_size)


@register_model("vitpose", codec="udp")
def vitpose_l_simple(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """ViTPose-L with the simple decoder."""
    return vitpose("l", "simple", "vitpose_l_simple", num_keypoints, input_size)
