"""TokenPose (Li et al., ICCV 2021): keypoint tokens attend to patch tokens of a CNN feature map in a
transformer; an MLP maps each keypoint token to its heatmap.

A CNN takes the crop to a stride-4 feature map (TokenPose-S: HRNet's stem and stage 1; -B and -L:
HRNet-W32/W48 stages 1-3), cut into patches (4 x 3 feature pixels at 256x192), each projected to a
192-wide visual token. 17 learned keypoint tokens go in front; every layer adds the fixed sine position
table to the visual tokens (``sine-full``). The keypoint tokens of the last layer (TokenPose-L: of each of
its three transformers, concatenated) pass through the MLP head to (N, K, H/4, W/4) heatmaps.

Names follow the official release (leeyegy/TokenPose ``pose_tokenpose_{s,b,l}.py``): TokenPose-S is one
module ``features`` (stem and transformer side by side), -B and -L a backbone ``pre_feature`` and a
``transformer``, so the official checkpoints load strictly. The sine table is a buffer here (a frozen
parameter there): the same key, and not counted among the parameters, as the published counts do not.

Facts of the official code the figures depend on: TokenPose-S scales attention by ``dim ** -0.5``, -B and
-L by ``(dim / heads) ** -0.5``; the head has a hidden layer (``h * w / 8`` units for -S and -B, 384 for
-L) only when the token width is at most half of it (at 256x192: -S and -B yes, -L's 576-wide concatenation
no; at smaller crops -S and -B lose it too); TokenPose-L/D6 and L/D24 are three transformers of depth 2 and
8 (the repository's L/D6 is its MPII config; PPT's "TokenPose-L/D6" is another model, see ``ppt.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mamkpd.models.checkpoint import NATIVE_LAYOUT
from mamkpd.models.init import hrnet_init, trunc_normal_, trunc_normal_init
from mamkpd.models.registry import register_model

from .hrnet import HRNet, HRNetConfig
from .topdown import check_input_size

STRIDE = 4  # the CNN's feature map, and the heatmaps, are a quarter of the input


@dataclass(frozen=True)
class TokenPoseConfig:
    """One TokenPose variant as its official config builds it (256x192 figures in the comments)."""

    hrnet_width: int | None  # None: TokenPose-S's stem (HRNet stem + stage 1, 256 channels)
    depth: int  # layers of each transformer
    heads: int
    transformers: int = 1  # TokenPose-L: three in a row, the keypoint tokens of each concatenated for the head
    dim: int = 192
    mlp_ratio: int = 3
    patch: tuple[int, int] = (4, 3)  # (h, w) feature pixels per visual token: 16 x 16 tokens at 256x192
    scale_per_head: bool = True  # attention scaled by (dim / heads) ** -0.5; TokenPose-S: dim ** -0.5
    hidden_heatmap_dim: int | None = None  # None: h * w / 8 of the heatmap (the -S and -B configs)


TOKENPOSE_SIZES = {
    "s_v1": TokenPoseConfig(None, depth=12, heads=8, scale_per_head=False),
    "b": TokenPoseConfig(32, depth=12, heads=8),
    "l_d6": TokenPoseConfig(48, depth=2, heads=8, transformers=3, hidden_heatmap_dim=384),
    "l_d24": TokenPoseConfig(48, depth=8, heads=12, transformers=3, hidden_heatmap_dim=384),
}


def sine_position_table(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """(1, h * w, dim) normalised 2-D sine table (DETR's, as TokenPose builds it): the first half of the
    channels encodes the row, the second the column; each half alternates sin and cos of positions scaled to
    (0, 2 pi] over ``dim / 4`` frequencies."""
    half = dim // 2
    eps = 1e-6
    rows = torch.arange(1, h + 1, dtype=torch.float32) / (h + eps) * (2 * math.pi)
    cols = torch.arange(1, w + 1, dtype=torch.float32) / (w + eps) * (2 * math.pi)
    freq = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)

    def encode(pos: Tensor) -> Tensor:  # (n,) -> (n, half): sin on even channels, cos on odd ones
        angles = pos[:, None] / freq
        out = torch.empty_like(angles)
        out[:, 0::2] = angles[:, 0::2].sin()
        out[:, 1::2] = angles[:, 1::2].cos()
        return out

    y = encode(rows)[:, None, :].expand(h, w, half)
    x = encode(cols)[None, :, :].expand(h, w, half)
    return torch.cat([y, x], dim=-1).reshape(1, h * w, dim)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        return self.fn(self.norm(x), **kwargs)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(x)


class Attention(nn.Module):
    """Multi-head self-attention, qkv without bias. With ``keypoint_attention`` it also returns how much the
    ``num_keypoints`` leading tokens attend to each visual token, averaged over heads (PPT's pruning score)."""

    def __init__(self, dim: int, heads: int, scale_per_head: bool, num_keypoints: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads if scale_per_head else dim) ** -0.5
        self.num_keypoints = num_keypoints
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        # the official dropouts (rate 0 in every config) stay so that the names (to_out.0, net.3) do
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x: Tensor, keypoint_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # explicit attention as in the official code (fvcore counts these matmuls; it skips fused SDPA)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        out = self.to_out((attn @ v).transpose(1, 2).reshape(b, n, c))
        if not keypoint_attention:
            return out
        j = self.num_keypoints
        return out, attn[:, :, :j, j:].mean(dim=1)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm layers; before every layer but the first the position table is added to the visual tokens
    again (the first gets it with the patch embedding)."""

    def __init__(self, cfg: TokenPoseConfig, num_keypoints: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Residual(PreNorm(cfg.dim, Attention(cfg.dim, cfg.heads, cfg.scale_per_head, num_keypoints))),
                    Residual(PreNorm(cfg.dim, FeedForward(cfg.dim, cfg.dim * cfg.mlp_ratio))),
                ]
            )
            for _ in range(cfg.depth)
        )

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        for idx, (attn, ff) in enumerate(self.layers):
            if idx > 0:
                x[:, self.num_keypoints :] += pos
            x = ff(attn(x))
        return x


def mlp_head(width: int, hidden: int, heatmap_pixels: int) -> nn.Sequential:
    """The official rule: a hidden layer only when the token width is at most half of ``hidden``."""
    if width <= hidden // 2:
        return nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, heatmap_pixels)
        )
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, heatmap_pixels))


class KeypointTokens:
    """The keypoint-token transformer on a stride-4 feature map, set up on a module by ``_build_tokens``:
    ``keypoint_token``, ``pos_embedding``, ``patch_to_embedding``, the transformer(s) and ``mlp_head``.
    A mixin, because TokenPose-S keeps these beside its stem in one module."""

    def _build_tokens(
        self, cfg: TokenPoseConfig, channels: int, input_size: tuple[int, int], num_keypoints: int, transformer
    ) -> None:
        fh, fw = input_size[0] // STRIDE, input_size[1] // STRIDE
        ph, pw = cfg.patch
        self.patch = cfg.patch
        self.heatmap_size = (fh, fw)
        self.num_keypoints = num_keypoints
        self.keypoint_token = nn.Parameter(torch.zeros(1, num_keypoints, cfg.dim))
        trunc_normal_(self.keypoint_token, std=0.02)
        self.register_buffer("pos_embedding", sine_position_table(fh // ph, fw // pw, cfg.dim))
        self.patch_to_embedding = nn.Linear(channels * ph * pw, cfg.dim)
        self.transformer_names = (
            ["transformer"] if cfg.transformers == 1 else [f"transformer{i + 1}" for i in range(cfg.transformers)]
        )
        for name in self.transformer_names:
            self.add_module(name, transformer(cfg, num_keypoints))
        hidden = cfg.hidden_heatmap_dim or fh * fw // 8
        self.mlp_head = mlp_head(cfg.dim * cfg.transformers, hidden, fh * fw)

    def tokens(self, feature: Tensor) -> Tensor:
        """(N, C, h, w) feature map -> (N, K + visual tokens, dim), position table added."""
        n, c, h, w = feature.shape
        ph, pw = self.patch
        x = feature.reshape(n, c, h // ph, ph, w // pw, pw).permute(0, 2, 4, 3, 5, 1)
        x = self.patch_to_embedding(x.reshape(n, (h // ph) * (w // pw), ph * pw * c)) + self.pos_embedding
        return torch.cat([self.keypoint_token.expand(n, -1, -1), x], dim=1)

    def heatmaps(self, keypoint_tokens: Tensor) -> Tensor:
        """(N, K, width) -> (N, K, H/4, W/4)."""
        n, k, _ = keypoint_tokens.shape
        return self.mlp_head(keypoint_tokens).reshape(n, k, *self.heatmap_size)

    def forward_tokens(self, feature: Tensor) -> Tensor:
        x = self.tokens(feature)
        outs = []
        for name in self.transformer_names:
            x = getattr(self, name)(x, self.pos_embedding)
            outs.append(x[:, : self.num_keypoints])
        return self.heatmaps(torch.cat(outs, dim=-1))


class TokenTransformer(KeypointTokens, nn.Module):
    """TokenPose-B/L's ``transformer``: a stride-4 feature map -> heatmaps."""

    def __init__(self, cfg, channels, input_size, num_keypoints, transformer=Transformer):
        super().__init__()
        self._build_tokens(cfg, channels, input_size, num_keypoints, transformer)

    def forward(self, feature: Tensor) -> Tensor:
        return self.forward_tokens(feature)


class SmallFeatures(KeypointTokens, HRNet):
    """TokenPose-S's ``features``: HRNet's stem and stage 1 (``conv1`` ... ``layer1``) and the keypoint-token
    transformer side by side, as the official ``TokenPose_S_base``."""

    def __init__(self, cfg, input_size, num_keypoints, transformer=Transformer):
        HRNet.__init__(self, HRNetConfig(stage_modules=()))
        self._build_tokens(cfg, self.out_channels, input_size, num_keypoints, transformer)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_tokens(HRNet.forward(self, x))


class TokenPoseS(nn.Module):
    checkpoint_layouts = (NATIVE_LAYOUT,)
    input_channels = "rgb"  # the official COCO configs: DATASET.COLOR_RGB true

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class TokenPoseHRNet(nn.Module):
    """TokenPose-B/L: ``pre_feature`` (HRNet stages 1-3, high-resolution branch) then ``transformer``."""

    checkpoint_layouts = (NATIVE_LAYOUT,)
    input_channels = "rgb"

    def __init__(self, pre_feature: HRNet, transformer: nn.Module):
        super().__init__()
        self.pre_feature = pre_feature
        self.transformer = transformer

    def forward(self, x: Tensor) -> Tensor:
        return self.transformer(self.pre_feature(x))


def check_token_grid(cfg: TokenPoseConfig, input_size, name: str) -> tuple[int, int]:
    """(H, W) that the backbone halves cleanly (HRNet's stage 3: a multiple of 16) and whose stride-4 map cuts
    into whole patches; otherwise a ValueError naming the constraint."""
    size = check_input_size(input_size, STRIDE if cfg.hrnet_width is None else 16, name)
    grid = (STRIDE * cfg.patch[0], STRIDE * cfg.patch[1])
    if size[0] % grid[0] or size[1] % grid[1]:
        raise ValueError(
            f"{name}: input_size must be (H, W) with H a multiple of {grid[0]} and W of {grid[1]} (whole "
            f"{cfg.patch[0]}x{cfg.patch[1]} patches of the stride-{STRIDE} feature map), got {size}"
        )
    return size


def build_tokenpose(
    cfg: TokenPoseConfig, name: str, num_keypoints: int, input_size, transformer=Transformer
) -> nn.Module:
    """The official model of ``cfg`` at ``input_size``, with the official initialisation for training from
    scratch (HRNet's normal(0, 0.001) convs, the transformer's truncated-normal linears); the official
    recipe then loads ImageNet HRNet weights into the backbone."""
    input_size = check_token_grid(cfg, input_size, name)
    if cfg.hrnet_width is None:
        features = SmallFeatures(cfg, input_size, num_keypoints, transformer)
        trunc_normal_init(features)
        return TokenPoseS(hrnet_init(features))
    backbone = hrnet_init(HRNet(HRNetConfig(width=cfg.hrnet_width, stage_modules=(1, 4))))
    head = trunc_normal_init(TokenTransformer(cfg, backbone.out_channels, input_size, num_keypoints, transformer))
    return TokenPoseHRNet(backbone, head)


# TokenPose's data and test code are DarkPose's: crops and heatmaps on the (size - 1) pixel-centre grid, flip
# test without a shift, DARK decoding (TEST.POST_PROCESS true)
CODEC = "darkpose"


@register_model("tokenpose", codec=CODEC, tags=("table2",))
def tokenpose_s_v1(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """TokenPose-S-v1 (tokenpose_s_v1_256_192_patch43_dim192_depth12_heads8.yaml)."""
    return build_tokenpose(TOKENPOSE_SIZES["s_v1"], "tokenpose_s_v1", num_keypoints, input_size)


@register_model("tokenpose", codec=CODEC)
def tokenpose_b(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """TokenPose-B (tokenpose_b_256_192_patch43_dim192_depth12_heads8.yaml): HRNet-W32 stages 1-3."""
    return build_tokenpose(TOKENPOSE_SIZES["b"], "tokenpose_b", num_keypoints, input_size)


@register_model("tokenpose", codec=CODEC, tags=("table2",))
def tokenpose_l_d6(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """TokenPose-L/D6: HRNet-W48 stages 1-3, three depth-2 transformers (the official MPII L/D6 config at
    COCO's 256x192; the repository ships no COCO L/D6 config)."""
    return build_tokenpose(TOKENPOSE_SIZES["l_d6"], "tokenpose_l_d6", num_keypoints, input_size)


@register_model("tokenpose", codec=CODEC)
def tokenpose_l_d24(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """TokenPose-L/D24 (tokenpose_L_D24_256_192_patch43_dim192_depth24_heads12.yaml): three depth-8 transformers."""
    return build_tokenpose(TOKENPOSE_SIZES["l_d24"], "tokenpose_l_d24", num_keypoints, input_size)
