"""Group Pose (Liu et al., ICCV 2023): end-to-end multi-person pose estimation with instance and keypoint queries.

A backbone (ResNet-50 with frozen BatchNorm, or a Swin transformer) gives three levels (strides 8, 16, 32) and a
stride-2 3x3 conv a fourth (64); 1x1 (3x3) convs with GroupNorm project each to 256 channels, with a sine position
table (temperature 20) and a learnt level embedding. A six-layer deformable encoder refines the 4-level tokens;
its two-stage selection keeps the 100 tokens with the best class score and turns each into a pose: K keypoints
(an MLP's offsets from the token's proposal) and their centre. The decoder holds per pose one instance query and
K keypoint queries (the learnt keypoint embeddings plus the selected token); each of its six layers runs the
within-instance self-attention (over each pose's K + 1 queries), the across-instance self-attention (over the
100 queries of each type), deformable cross-attention of every keypoint query around its keypoint, an FFN, and
refines the keypoints (``pose_embed``). The instance query of the last layer scores the pose (``class_embed``,
two classes, sigmoid). The multi-scale deformable attention is plain PyTorch (bilinear ``grid_sample`` at the
sampling points, Deformable DETR's reference formulation of its CUDA kernel).

Module and parameter names are the official ``models/grouppose`` ones (Michel-liu/GroupPose, ``config/
grouppose.py`` built by ``main.py``): ``backbone.0.*`` (torchvision's ResNet names under ``body`` with
FrozenBatchNorm buffers, or the Swin transformer of Swin-Transformer-Object-Detection with ``norm1``-``norm3``),
``input_proj.*``, ``transformer.*`` (``encoder``, ``decoder`` with its ``within_attn``/``across_attn``/
``cross_attn``, ``enc_output``, ``enc_pose_embed``, ``enc_out_class_embed``, ``keypoint_embedding``,
``instance_embedding``, ``level_embed``), ``class_embed.*`` and ``pose_embed.*`` (also listed under
``transformer.decoder``, where the official model shares them): the released checkpoints' ``model``
state_dicts load strictly.

The official evaluation resizes each image's short side to 800 pixels (the long side at most 1333), RGB,
ImageNet mean and standard deviation, one image per batch (no padding); the registered input size, the one
params, GFLOPs and FPS are measured at, is that largest input, 800x1333. ``forward`` gives the last decoder
layer's pose scores (N, 100, 2) (logits) and keypoints (N, 100, K, 2) (normalised to the input, x then y);
:meth:`GroupPose.decode` is the official ``PostProcess``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.codecs.letterbox import Placement, WholeImageInput
from mamkpd.models.registry import check_input_size, register_model

from .rtmo import MultiheadAttention
from .simple_baseline import ResNet

INPUT_SIZE = (800, 1333)  # datasets/coco.py make_coco_transforms('val'): RandomResize([800], max_size=1333)
LEVEL_STRIDES = (8, 16, 32, 64)  # three backbone levels (return_interm_indices [1, 2, 3]) and one extra conv
# config/grouppose.py postprocess: the 50 best (pose, class) pairs; datasets/coco_eval.py scores them as
# category ``label``, and COCO's person keypoints are category 1
NUM_SELECT = 50
PERSON_LABEL = 1
VISIBILITY = 1.0  # models/grouppose/grouppose.py: every keypoint's third value is sigmoid(1)


# ----------------------------------------------------------------------------------------- shared pieces
def sine_table(t: Tensor, num_feats: int, temperature: float) -> Tensor:
    """(...) values -> (..., num_feats): sin and cos of ``t / temperature ** (2 * (i // 2) / num_feats)``,
    interleaved (sin at even i, cos at odd i), the DETR position embeddings' form."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=t.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    angles = t[..., None] / dim_t
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """util/misc.py ``inverse_sigmoid``: the logit of ``x`` clamped to [eps, 1 - eps]."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """``layers.{i}`` linear layers with ReLU between (models/grouppose/utils.py MLP)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


# ----------------------------------------------------------------------------------------------- backbones
class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms, all buffers (DETR's; eps 1e-5)."""

    def __init__(self, num_features: int):
        super().__init__()
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), fill))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features))
        else:
            _freeze_batchnorm(child)
    return module


class ResNetLevels(nn.Module):
    """backbones/backbone.py ``Backbone('resnet50')``: torchvision's ResNet-50 with FrozenBatchNorm2d under
    ``body``, giving layer2, layer3 and layer4 (strides 8, 16, 32)."""

    def __init__(self):
        super().__init__()
        self.body = _freeze_batchnorm(ResNet(50))
        self.num_channels = (512, 1024, 2048)

    def forward(self, x: Tensor) -> list[Tensor]:
        b = self.body
        x = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        c3 = b.layer2(x)
        c4 = b.layer3(c3)
        return [c3, c4, b.layer4(c4)]


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int


# backbones/swin_transformer.py build_swin_transformer
SWIN_CONFIGS = {
    "swin_T_224_1k": SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_L_384_22k": SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
}


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * windows, ws * ws, C), windows row by row."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        ws = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (ws*ws, ws*ws, 2)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:  # the shifted windows' regions: -100 between tokens of different regions
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(b, self.num_heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class SwinMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int):
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, 4 * dim)

    def forward(self, x: Tensor, h: int, w: int, mask: Tensor) -> Tensor:
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift
        y = self.norm1(x).view(b, h, w, c)
        # padded (after the norm, with zeros) up to whole windows; the padding takes part in the attention
        y = F.pad(y, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = y.shape[1:3]
        if shift:
            y = torch.roll(y, (-shift, -shift), (1, 2))
        y = window_reverse(self.attn(window_partition(y, ws), mask if shift else None), ws, hp, wp)
        if shift:
            y = torch.roll(y, (shift, shift), (1, 2))
        x = x + y[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


def shifted_window_mask(h: int, w: int, ws: int, device: torch.device) -> Tensor:
    """(windows, ws*ws, ws*ws): 0 within a region of the cyclically shifted map, -100 across regions."""
    shift = ws // 2
    regions = torch.zeros((1, math.ceil(h / ws) * ws, math.ceil(w / ws) * ws, 1), device=device)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((hs, wsl) for hs in slices for wsl in slices):
        regions[:, hs, wsl, :] = i
    windows = window_partition(regions, ws).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)  # whole region numbers: 0, or at least 1 apart
    return diff.abs().clamp(max=1) * -100.0


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, downsample: bool):
        super().__init__()
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        mask = shifted_window_mask(h, w, self.window_size, x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x, (self.downsample(x, h, w) if self.downsample is not None else x)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch: int = 4):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, embed_dim, patch, patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = self.proj(F.pad(x, (0, -w % self.patch, 0, -h % self.patch)))
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(x.shape)


class SwinLevels(nn.Module):
    """backbones/swin_transformer.py ``SwinTransformer(out_indices=(1, 2, 3))``: stages 2-4 (strides 8, 16,
    32), each through its own LayerNorm (``norm1``-``norm3``)."""

    out_indices = (1, 2, 3)

    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        dims = [cfg.embed_dim * 2**i for i in range(len(cfg.depths))]
        self.layers = nn.ModuleList(
            SwinStage(dim, depth, heads, cfg.window_size, i < len(dims) - 1)
            for i, (dim, depth, heads) in enumerate(zip(dims, cfg.depths, cfg.num_heads, strict=True))
        )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(dims[i]))
        self.num_channels = tuple(dims[i] for i in self.out_indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x, h, w)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(out)
                outs.append(out.view(-1, h, w, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
            h, w = (h + 1) // 2, (w + 1) // 2
        return outs


# ------------------------------------------------------------------------------ deformable attention
def ms_deform_attn(value: Tensor, shapes: Sequence[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """Multi-scale deformable attention: ``value`` (N, S, M, D) (M heads, the levels' tokens in a row),
    ``locations`` (N, Q, M, L, P, 2) in [0, 1] (x, y) of each level, ``weights`` (N, Q, M, L, P) -> (N, Q, M*D):
    each head's values sampled bilinearly (zero outside, pixel centres at (i + 0.5) / size), weighted, summed."""
    n, _, m, d = value.shape
    _, q, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1
    sampled = []
    for level, (v, (h, w)) in enumerate(zip(value.split([h * w for h, w in shapes], dim=1), shapes, strict=True)):
        v = v.flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N*M, Q, P, 2)
        sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(n * m, 1, q, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * d, q)
    return out.transpose(1, 2)


class MSDeformAttn(nn.Module):
    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, reference: Tensor, source: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        """``query`` (N, Q, C), ``reference`` (N, Q, L, 2) normalised (x, y) per level, ``source`` (N, S, C)."""
        n, q, c = query.shape
        value = self.value_proj(source).view(n, source.shape[1], self.n_heads, c // self.n_heads)
        m, levels, points = self.n_heads, self.n_levels, self.n_points
        offsets = self.sampling_offsets(query).view(n, q, m, levels, points, 2)
        weights = self.attention_weights(query).view(n, q, m, levels * points).softmax(-1)
        normalizer = query.new_tensor([[w, h] for h, w in shapes])  # offsets are in each level's pixels
        locations = reference[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = ms_deform_attn(value, shapes, locations, weights.view(n, q, m, levels, points))
        return self.output_proj(out)


class EncoderLayer(nn.Module):
    def __init__(self, d: int, ffn: int, levels: int, heads: int, points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d, levels, heads, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src: Tensor, pos: Tensor, reference: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, *layer_args: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        refs = []
        for h, w in shapes:  # every token's centre, normalised, the same on every level
            ys, xs = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, device=src.device) / h,
                torch.linspace(0.5, w - 0.5, w, device=src.device) / w,
                indexing="ij",
            )
            refs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        reference = torch.cat(refs)[None, :, None].expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.layers:
            src = layer(src, pos, reference, shapes)
        return src


class DecoderLayer(nn.Module):
    """Within-instance self-attention, across-instance self-attention, deformable cross-attention, FFN, each
    with a residual and a post-LayerNorm. Queries (N, Q, 1 + K, C): each pose's instance query, then its K
    keypoint queries. The keypoint queries' position embedding is added to the queries themselves (the official
    ``with_pos_embed`` adds it in place), before the within-instance and before the cross-attention."""

    def __init__(self, d: int, ffn: int, levels: int, heads: int, points: int):
        super().__init__()
        self.within_attn = MultiheadAttention(d, heads)
        self.within_norm = nn.LayerNorm(d)
        self.across_attn = MultiheadAttention(d, heads)
        self.across_norm = nn.LayerNorm(d)
        self.cross_attn = MSDeformAttn(d, levels, heads, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)

    @staticmethod
    def _with_pos(x: Tensor, pos: Tensor) -> Tensor:
        return torch.cat((x[:, :, :1], x[:, :, 1:] + pos), dim=2)

    def forward(
        self, x: Tensor, pos: Tensor, reference: Tensor, memory: Tensor, shapes: Sequence[tuple[int, int]]
    ) -> Tensor:
        n, q, t, c = x.shape
        x = self._with_pos(x, pos)
        groups = x.flatten(0, 1)  # one group per pose: its instance and keypoint queries
        x = self.within_norm(x + self.within_attn(groups, groups, groups).view(n, q, t, c))
        groups = x.transpose(1, 2).flatten(0, 1)  # one group per query type: that query of every pose
        x = self.across_norm(x + self.across_attn(groups, groups, groups).view(n, t, q, c).transpose(1, 2))
        x = self._with_pos(x, pos)
        out = self.cross_attn(x.flatten(1, 2), reference, memory, shapes).view(n, q, t, c)
        x = self.norm1(x + out)
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class Decoder(nn.Module):
    def __init__(self, num_layers: int, d: int, *layer_args: int):
        super().__init__()
        self.d_model = d
        self.layers = nn.ModuleList(DecoderLayer(d, *layer_args) for _ in range(num_layers))
        self.half_pose_ref_point_head = MLP(d, d, d, 2)
        # the model's ``pose_embed`` and ``class_embed``, shared (GroupPose.__init__ sets them)
        self.pose_embed: nn.ModuleList
        self.class_embed: nn.ModuleList

    def forward(
        self, x: Tensor, points: Tensor, memory: Tensor, shapes: Sequence[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """``x`` (N, Q, 1 + K, C) queries, ``points`` (N, Q, 1 + K, 2) the pose centres and keypoints in [0, 1]
        -> the last layer's queries and its keypoints (N, Q, K, 2)."""
        levels = len(shapes)
        for layer, pose_embed in zip(self.layers, self.pose_embed, strict=True):
            n, q, t, _ = points.shape
            sine = sine_table(points.flip(-1) * (2 * math.pi), self.d_model // 2, 10000).flatten(-2)
            pos = self.half_pose_ref_point_head(sine)[:, :, 1:]
            reference = points.flatten(1, 2)[:, :, None].expand(-1, -1, levels, -1)
            x = layer(x, pos, reference, memory, shapes)
            keypoints = (inverse_sigmoid(points[:, :, 1:]) + pose_embed(x[:, :, 1:])).sigmoid()
            points = torch.cat((keypoints.mean(2, keepdim=True), keypoints), dim=2).detach()
        return x, keypoints


def encoder_proposals(memory: Tensor, shapes: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """models/grouppose/utils.py ``gen_encoder_output_proposals`` without padding: each token's centre as a
    proposal (inverse-sigmoid x, y, w, h; w = h = 0.05 * 2 ** level); a token whose proposal leaves (0.01, 0.99)
    gets an infinite proposal and zero memory."""
    proposals = []
    for level, (h, w) in enumerate(shapes):
        ys, xs = torch.meshgrid(
            torch.linspace(0, h - 1, h, device=memory.device),
            torch.linspace(0, w - 1, w, device=memory.device),
            indexing="ij",
        )
        xy = torch.stack(((xs.reshape(-1) + 0.5) / w, (ys.reshape(-1) + 0.5) / h), -1)
        proposals.append(torch.cat((xy, torch.full_like(xy, 0.05 * 2.0**level)), -1))
    proposals = torch.cat(proposals)[None]
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float("inf"))
    return memory.masked_fill(~valid, 0.0), proposals


class Transformer(nn.Module):
    def __init__(self, cfg: GroupPoseConfig, num_keypoints: int):
        super().__init__()
        d = cfg.hidden_dim
        layer_args = (cfg.ffn_dim, cfg.levels, cfg.heads, cfg.points)
        self.num_queries = cfg.num_queries
        self.level_embed = nn.Parameter(torch.randn(cfg.levels, d))
        self.encoder = Encoder(cfg.enc_layers, d, *layer_args)
        self.decoder = Decoder(cfg.dec_layers, d, *layer_args)
        self.keypoint_embedding = nn.Embedding(num_keypoints, d)
        self.instance_embedding = nn.Embedding(1, d)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.enc_pose_embed = MLP(d, 2 * d, 2 * num_keypoints, 4)
        self.enc_out_class_embed = nn.Linear(d, cfg.num_classes)

    def forward(self, srcs: list[Tensor], pos: list[Tensor]) -> tuple[Tensor, Tensor]:
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + e for p, e in zip(pos, self.level_embed, strict=True)], 1)
        memory = self.encoder(src, pos, shapes)
        # two-stage query selection: the tokens with the best class score, each with its proposal's pose
        selected, proposals = encoder_proposals(memory, shapes)
        selected = self.enc_output_norm(self.enc_output(selected))
        top = self.enc_out_class_embed(selected).max(-1).values.topk(self.num_queries, dim=1).indices
        n, q, d = selected.shape[0], self.num_queries, selected.shape[-1]
        tokens = selected.gather(1, top[..., None].expand(-1, -1, d))
        proposals = proposals.expand(n, -1, -1).gather(1, top[..., None].expand(-1, -1, 4))
        keypoints = (self.enc_pose_embed(tokens).view(n, q, -1, 2) + proposals[:, :, None, :2]).sigmoid()
        points = torch.cat((keypoints.mean(2, keepdim=True), keypoints), dim=2).detach()
        tokens = tokens.detach()[:, :, None]
        queries = torch.cat(
            (
                self.instance_embedding.weight.expand(n, q, 1, d),
                self.keypoint_embedding.weight.expand(n, q, -1, d) + tokens,
            ),
            dim=2,
        )
        return self.decoder(queries, points, memory, shapes)


# -------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class GroupPoseConfig:
    """config/grouppose.py (``--backbone`` picks the backbone)."""

    backbone: str  # "resnet50" or a key of SWIN_CONFIGS
    hidden_dim: int = 256
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    heads: int = 8
    levels: int = 4
    points: int = 4
    num_queries: int = 100
    num_classes: int = 2


class GroupPose(nn.Module):
    """(N, 3, H, W) RGB image normalised with ImageNet's mean and std -> pose logits (N, Q, 2) and keypoints
    (N, Q, K, 2), (x, y) normalised to the input."""

    # main.py's evaluation: the short side resized to 800 (the long side at most 1333), RGB, ImageNet statistics,
    # one image per batch: no padding
    whole_image_input = WholeImageInput(
        resampling="resize_short",
        channels="rgb",
        divide_by=255.0,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )

    def __init__(
        self,
        cfg: GroupPoseConfig,
        num_keypoints: int = 17,
        input_size: tuple[int, int] = INPUT_SIZE,
        name: str = "GroupPose",
    ):
        super().__init__()
        self.input_size = check_grouppose_size(input_size, cfg.num_queries, name)
        self.num_keypoints = num_keypoints
        d = cfg.hidden_dim
        self.transformer = Transformer(cfg, num_keypoints)
        backbone = ResNetLevels() if cfg.backbone == "resnet50" else SwinLevels(SWIN_CONFIGS[cfg.backbone])
        channels = backbone.num_channels
        projections = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in channels]
        extra = [nn.Sequential(nn.Conv2d(channels[-1], d, 3, 2, 1), nn.GroupNorm(32, d))]
        self.input_proj = nn.ModuleList(projections + extra)
        self.backbone = nn.ModuleList([backbone])  # the official Joiner(backbone, position embedding)
        self.class_embed = nn.ModuleList(nn.Linear(d, cfg.num_classes) for _ in range(cfg.dec_layers))
        self.pose_embed = nn.ModuleList(MLP(d, d, 2, 3) for _ in range(cfg.dec_layers))
        self.transformer.decoder.pose_embed = self.pose_embed
        self.transformer.decoder.class_embed = self.class_embed

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone[0](x)
        srcs = [proj(f) for proj, f in zip(self.input_proj, features, strict=False)]
        srcs.append(self.input_proj[-1](features[-1]))
        pos = [position_table(*s.shape[-2:], s.device).expand(s.shape[0], -1, -1, -1) for s in srcs]
        queries, keypoints = self.transformer(srcs, pos)
        return self.class_embed[-1](queries[:, :, 0]), keypoints

    @torch.no_grad()
    def decode(
        self,
        outputs: tuple[Tensor, Tensor],
        input_hw: Sequence[int] | None = None,
        placements: Sequence[Placement] | None = None,
        num_select: int = NUM_SELECT,
    ) -> list[dict[str, Tensor]]:
        """models/grouppose/postprocesses.py ``PostProcess``: the ``num_select`` best (pose, class) sigmoid
        scores, the poses' keypoints times the image size (``input_hw``, by default the registered input; with
        ``placements``, each image's original size as the official ``orig_size``), every keypoint scored
        sigmoid(1); of those the person class (label 1), the only one COCO evaluation scores. ``bboxes``: the
        keypoints' extent (the model predicts no box)."""
        logits, keypoints = outputs
        n, q, classes = logits.shape
        scores, index = logits.sigmoid().flatten(1).topk(num_select, dim=1)
        query, label = torch.div(index, classes, rounding_mode="floor"), index % classes
        people = []
        for i in range(n):
            h, w = placements[i].image_hw if placements is not None else (input_hw or self.input_size)
            keep = label[i] == PERSON_LABEL
            points = keypoints[i, query[i, keep]] * keypoints.new_tensor([w, h])
            people.append(
                {
                    "keypoints": points,
                    "keypoint_scores": torch.full(points.shape[:2], VISIBILITY).sigmoid().to(points),
                    "scores": scores[i, keep],
                    "bboxes": torch.cat((points.amin(1), points.amax(1)), -1),
                }
            )
        return people

    @torch.no_grad()
    def predict(self, x: Tensor, placements: Sequence[Placement] | None = None) -> list[dict[str, Tensor]]:
        """``decode(forward(x))``: people in input pixels, or with each image's ``placements`` in image pixels."""
        return self.decode(self(x), tuple(x.shape[-2:]), placements)


def position_table(h: int, w: int, device: torch.device, num_feats: int = 128, temperature: float = 20) -> Tensor:
    """position_encoding.py ``PositionEmbeddingSineHW(128, 20, 20, normalize=True)`` of an unpadded (h, w) map:
    (1, 2 * num_feats, h, w), y's table then x's."""
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + 1e-6) * (2 * math.pi)
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + 1e-6) * (2 * math.pi)
    ty = sine_table(ys, num_feats, temperature)[:, None].expand(h, w, -1)
    tx = sine_table(xs, num_feats, temperature)[None].expand(h, w, -1)
    return torch.cat((ty, tx), -1).permute(2, 0, 1)[None]


def check_grouppose_size(input_size: Sequence[int], num_queries: int, name: str) -> tuple[int, int]:
    """Any (H, W) whose four levels hold at least ``num_queries`` tokens (the two-stage selection takes that many)."""
    h, w = check_input_size(input_size, 1, name)
    tokens = sum(math.ceil(h / s) * math.ceil(w / s) for s in LEVEL_STRIDES)
    if tokens < num_queries:
        raise ValueError(
            f"{name}: input_size must be (H, W) whose encoder levels (strides {LEVEL_STRIDES}) hold at least its "
            f"{num_queries} queries' worth of tokens, got {h}x{w}: {tokens} tokens"
        )
    return h, w


# One explicit factory per backbone: a whole image (short side 800, at most 1333) per sample, decoded by
# GroupPose.decode.
_REGISTRATION = dict(input_size=INPUT_SIZE, whole_image=True, codec="grouppose", tags=("table2", "one-stage"))


@register_model("grouppose", **_REGISTRATION)
def grouppose_swin_l(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> GroupPose:
    """GroupPose-L: Swin-L (swin_L_384_22k) backbone, README COCO val AP 74.8 (the paper's Table 2 row)."""
    return GroupPose(GroupPoseConfig("swin_L_384_22k"), num_keypoints, input_size, "grouppose_swin_l")


@register_model("grouppose", **_REGISTRATION)
def grouppose_swin_t(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> GroupPose:
    """GroupPose with a Swin-T (swin_T_224_1k) backbone, README COCO val AP 73.6."""
    return GroupPose(GroupPoseConfig("swin_T_224_1k"), num_keypoints, input_size, "grouppose_swin_t")


@register_model("grouppose", **_REGISTRATION)
def grouppose_r50(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> GroupPose:
    """GroupPose with a ResNet-50 backbone (config/grouppose.py's default), README COCO val AP 72.0."""
    return GroupPose(GroupPoseConfig("resnet50"), num_keypoints, input_size, "grouppose_r50")
