"""PPT, token-Pruned Pose Transformer (Ma et al., ECCV 2022): TokenPose whose keypoint tokens pick the visual
tokens to keep.

After the attention of layers 3, 6 and 9 (counted from 0), each visual token is scored by the attention the
keypoint tokens pay it (averaged over heads, summed over keypoints); only the top ``ceil(keep_ratio * n)`` of
the ``n`` remaining tokens, with their position entries, go on to the feed-forward and the later layers. At
256x192 and the configs' keep ratio 0.7 that is 256 -> 180 -> 126 -> 89 visual tokens, which is where PPT's
savings come from; a keep ratio of 1 is TokenPose.

Names follow the official release (HowieMa/PPT ``single-view-PPT/lib/models``), whose attention sub-layer has
no ``Residual`` wrapper (``layers.N.0.norm``, ``layers.N.0.fn.to_qkv``; the residual is added in the loop).
PPT-L is its ``ppt_L_D6`` config: TokenPose-B's single transformer, six layers deep, on HRNet-W48.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mamkpd.models.registry import register_model

from .tokenpose import (
    CODEC,
    TOKENPOSE_SIZES,
    Attention,
    FeedForward,
    PreNorm,
    Residual,
    TokenPoseConfig,
    build_tokenpose,
)

PRUNE_LAYERS = (3, 6, 9)  # the official Transformer's pruning_loc default
KEEP_RATIO = 0.7  # MODEL.PRUNING_RATIO of every PPT config

PPT_SIZES = {
    "s": TOKENPOSE_SIZES["s_v1"],
    "b": TOKENPOSE_SIZES["b"],
    "l_d6": TokenPoseConfig(48, depth=6, heads=8),
}


class PrunedTransformer(nn.Module):
    """TokenPose's transformer that drops the visual tokens the keypoint tokens attend to least.

    ``keep_ratio`` is an attribute: the official training ramps it from 1 down to the config's value
    (``adjust_keep_rate``) and tests at the config's value.
    """

    def __init__(
        self,
        cfg: TokenPoseConfig,
        num_keypoints: int,
        prune_layers: tuple[int, ...] = PRUNE_LAYERS,
        keep_ratio: float = KEEP_RATIO,
    ):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.prune_layers = tuple(prune_layers)
        self.keep_ratio = keep_ratio
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(cfg.dim, Attention(cfg.dim, cfg.heads, cfg.scale_per_head, num_keypoints)),
                    Residual(PreNorm(cfg.dim, FeedForward(cfg.dim, cfg.dim * cfg.mlp_ratio))),
                ]
            )
            for _ in range(cfg.depth)
        )

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        j = self.num_keypoints
        pos = pos.expand(x.shape[0], -1, -1)
        for idx, (attn, ff) in enumerate(self.layers):
            if idx > 0:
                x[:, j:] += pos
            out, keypoint_attention = attn(x, keypoint_attention=True)
            x = x + out
            if idx in self.prune_layers and self.keep_ratio < 1:
                keep = math.ceil(keypoint_attention.shape[-1] * self.keep_ratio)
                index = keypoint_attention.sum(dim=1).topk(keep, dim=1).indices[..., None].expand(-1, -1, x.shape[-1])
                pos = torch.gather(pos, 1, index)
                x = torch.cat([x[:, :j], torch.gather(x[:, j:], 1, index)], dim=1)
            x = ff(x)
        return x


def ppt(size: str, name: str, num_keypoints: int, input_size) -> nn.Module:
    return build_tokenpose(PPT_SIZES[size], name, num_keypoints, input_size, transformer=PrunedTransformer)


@register_model("ppt", codec=CODEC)
def ppt_s(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """PPT-S (ppt_s_v1_256_192_patch43_dim192_depth12_heads8.yaml): TokenPose-S-v1 with pruning."""
    return ppt("s", "ppt_s", num_keypoints, input_size)


@register_model("ppt", codec=CODEC, tags=("table2",))
def ppt_b(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """PPT-B (ppt_b_256_192_patch43_dim192_depth12_heads8.yaml): TokenPose-B with pruning."""
    return ppt("b", "ppt_b", num_keypoints, input_size)


@register_model("ppt", codec=CODEC, tags=("table2",))
def ppt_l_d6(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
    """PPT-L/D6 (ppt_L_D6_256_192_patch43_dim192_depth6_heads8.yaml): HRNet-W48 stages 1-3, one depth-6
    transformer pruned after layer 3."""
    return ppt("l_d6", "ppt_l_d6", num_keypoints, input_size)
