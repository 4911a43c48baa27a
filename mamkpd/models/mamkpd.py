"""MamKPD (paper section 3): stem -> stages of [downsampling/CMM, SS2D blocks, gate, LayerNorm] ->
deconvolution decoder, with every variant of Tables 1 and 5 and Figure 3.

The paper leaves several details open. The defaults below are the readings that fit its parameter
counts best (see reports/ for how the counts move under the others); each is a config field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..ops import check_scan_backend
from .init import INITS
from .layers import SS2D, ContextModeling, DeconvHead, LinearPatchEmbed, PatchMerging, SS2DBlock
from .registry import check_input_size, register_model

DOWNSAMPLING = ("cmm", "patch_merging", "linear")


@dataclass
class MamKPDConfig:
    depths: tuple[int, ...] = (2, 4, 6)  # SS2D blocks per stage
    dims: tuple[int, ...] = (96, 192, 384)  # channels per stage
    num_keypoints: int = 17
    input_size: tuple[int, int] = (256, 192)  # (H, W)
    in_channels: int = 3
    stem: bool = True  # 7x7 conv s2 + two 3x3 depthwise convs -> H/2
    downsampling: str = "cmm"  # what opens each stage: "cmm", "patch_merging" (w-PM) or "linear" (w/o-CMM)
    context_gate: bool = True  # SS2D output gates the CMM's intra-patch features (cmm only)
    d_state: int = 8
    ssm_ratio: float = 2.0
    dt_rank: int | None = None  # None: ceil(C / 16)
    d_conv: int = 3
    z_gate: bool = False
    mlp_ratio: float = 0.0  # 0: no MLP after SS2D (VMamba v0 style)
    decoder_width: int | None = None  # None: dims[-1] // 4
    drop_path_rate: float = 0.0
    scan_backend: str = "auto"
    # on the triton backend, SS2D's cross scan, scan and merge run as one kernel (VMamba's fused form); False
    # keeps the unfused, mamba-ssm-compatible op there too (the GPU check times both)
    fused_cross_scan: bool = True
    init: str = "vmamba"  # model-level init: VMamba's ("vmamba") or PyTorch's defaults ("pytorch")

    def __post_init__(self):
        self.depths, self.dims = tuple(self.depths), tuple(self.dims)
        self.input_size = tuple(self.input_size)
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(f"depths {self.depths} and dims {self.dims} must be non-empty and of equal length")
        if self.downsampling not in DOWNSAMPLING:
            raise ValueError(f"downsampling must be one of {DOWNSAMPLING}, got {self.downsampling!r}")
        check_scan_backend(self.scan_backend)
        self.input_size = check_input_size(self.input_size, self.stride, "MamKPD")
        if self.num_keypoints < 1:
            raise ValueError(f"num_keypoints must be positive, got {self.num_keypoints}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {tuple(INITS)}, got {self.init!r}")

    @property
    def stride(self) -> int:
        """Total downsampling of the encoder: stages at /4, /8, /16 (, /32)."""
        return 2 ** (len(self.dims) + 1)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // 4, self.input_size[1] // 4)


# the stem's activations are computed a few images at a time at inference so that each stays under glibc's
# 32 MB mmap ceiling (see MamKPD._stem_and_downsample), with room for the next one
STEM_CHUNK_BYTES = 16 * 2**20


def eager_inference(module: nn.Module) -> bool:
    """Whether ``module`` runs an eager inference forward: no training, no autograd, no trace (fvcore's) and no
    torch.compile, so that it may work in place or in pieces where the plain form would allocate more."""
    return not (module.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling())


class Stem(nn.Module):
    """Paper Fig. 2(b): a 7x7 conv (stride 2) and two 3x3 depthwise convs, each with BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()

        def conv_bn_relu(cin, cout, k, s, groups=1):
            return [
                nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.layers = nn.Sequential(
            *conv_bn_relu(in_channels, out_channels, 7, 2),
            *conv_bn_relu(out_channels, out_channels, 3, 1, groups=out_channels),
            *conv_bn_relu(out_channels, out_channels, 3, 1, groups=out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        # FLOP counters trace the BNs; torch.compile fuses them itself (and cannot trace an out= into the input)
        if not eager_inference(self):
            return self.layers(x)
        # inference: each BatchNorm as one in-place scale and shift of its conv's fresh output (what eval-mode
        # batch_norm computes on the CPU); a new full-resolution tensor per BN cost its page faults, ~7 ms per
        # image at batch 8
        for layer in self.layers:
            x = _batch_norm_in_place(layer, x) if isinstance(layer, nn.BatchNorm2d) else layer(x)
        return x


def _batch_norm_in_place(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1), out=x)


class Stage(nn.Module):
    """Downsampling (CMM or an ablation's replacement), SS2D blocks, gate, LayerNorm (paper Eq. 2)."""

    def __init__(self, cfg: MamKPDConfig, index: int, in_channels: int, first_stride: int, drop_path: list[float]):
        super().__init__()
        dim = cfg.dims[index]
        if cfg.downsampling == "cmm":
            self.downsample = ContextModeling(in_channels, dim, embed_stride=first_stride // 2)
        elif cfg.downsampling == "patch_merging":
            self.downsample = PatchMerging(in_channels, dim, stride=first_stride)
        else:
            self.downsample = LinearPatchEmbed(in_channels, dim, stride=first_stride)
        self.gate = cfg.downsampling == "cmm" and cfg.context_gate
        self.blocks = nn.Sequential(
            *[
                SS2DBlock(
                    dim,
                    drop_path=drop_path[i],
                    mlp_ratio=cfg.mlp_ratio,
                    d_state=cfg.d_state,
                    ssm_ratio=cfg.ssm_ratio,
                    dt_rank=cfg.dt_rank,
                    d_conv=cfg.d_conv,
                    z_gate=cfg.z_gate,
                    scan_backend=cfg.scan_backend,
                    fused_cross_scan=cfg.fused_cross_scan,
                )
                for i in range(cfg.depths[index])
            ]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_context(self.downsample(x))

    def forward_context(self, context: Tensor) -> Tensor:
        """The stage after its downsampling, from the downsampled features ``context`` (B, H, W, C)."""
        y = self.blocks(context)
        if self.gate:  # SS2D output as attention weights over the intra-patch features
            # in place where autograd records nothing (its backward would need y), saving a tensor per stage
            y = y * context if torch.is_grad_enabled() or y is context else y.mul_(context)
        return self.norm(y).permute(0, 3, 1, 2)


class MamKPD(nn.Module):
    def __init__(self, cfg: MamKPDConfig):
        super().__init__()
        self.config = cfg
        self.stem = Stem(cfg.in_channels, cfg.dims[0]) if cfg.stem else None
        total = sum(cfg.depths)  # stochastic depth rising linearly to drop_path_rate (plain floats: works on meta)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, channels, start = [], cfg.dims[0] if cfg.stem else cfg.in_channels, 0
        for i, depth in enumerate(cfg.depths):
            # the first stage reaches /4 from the stem's /2, or from the image when there is no stem
            first_stride = 4 if (i == 0 and not cfg.stem) else 2
            stages.append(Stage(cfg, i, channels, first_stride, rates[start : start + depth]))
            channels, start = cfg.dims[i], start + depth
        self.stages = nn.ModuleList(stages)
        self.head = DeconvHead(
            cfg.dims[-1],
            cfg.decoder_width or cfg.dims[-1] // 4,
            num_deconv=len(cfg.dims) - 1,
            num_keypoints=cfg.num_keypoints,
        )
        INITS[cfg.init](self)  # after every block's own init (SS2D's A_logs, Ds, dt keep VMamba's)

    @property
    def scan_backend(self) -> str:
        return self.config.scan_backend

    @scan_backend.setter
    def scan_backend(self, name: str) -> None:
        """Ask for another backend; every SS2D block resolves it for its device (see :class:`SS2D`)."""
        self.config.scan_backend = check_scan_backend(name)
        for block in self.modules():
            if isinstance(block, SS2D):
                block.scan_backend = name

    def check_input(self, x: Tensor) -> None:
        cfg = self.config
        if x.dim() != 4:
            raise ValueError(f"MamKPD expects images (N, C, H, W), got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"MamKPD expects {cfg.in_channels} input channels, got {x.shape[1]}")
        if x.shape[2] % cfg.stride or x.shape[3] % cfg.stride:
            raise ValueError(f"input height and width must be divisible by {cfg.stride}, got {tuple(x.shape[2:])}")

    def forward(self, x: Tensor) -> Tensor:
        if not torch.compiler.is_compiling():
            self.check_input(x)
        # channels-last from the start: oneDNN runs the stem's 7x7 conv (3 input channels) and every depthwise
        # conv after it several times faster in NHWC, and the stages' (B, H, W, C) views of it are then free
        x = x.contiguous(memory_format=torch.channels_last)
        stages = iter(self.stages)
        if self.stem is not None:
            first = next(stages)
            x = first.forward_context(self._stem_and_downsample(x, first))
        for stage in stages:
            x = stage(x)
        return self.head(x)

    def _stem_and_downsample(self, x: Tensor, first: Stage) -> Tensor:
        """The stem and the first stage's downsampling: at inference, a few images at a time. The stem's
        outputs are the model's largest activations (C x H/2 x W/2 floats an image: 4.7 MB for MamKPD-B at
        256x192); a tensor over glibc's 32 MB mmap ceiling is mapped afresh, page fault by page fault, every
        time it is allocated, where smaller ones reuse the heap. The downsampled result is a quarter the size,
        and every op before it acts on each image alone, so the outputs are the same."""
        if not eager_inference(self):
            return first.downsample(self.stem(x))
        per_image = 4 * self.config.dims[0] * (x.shape[2] // 2) * (x.shape[3] // 2)  # bytes of a stem output
        chunk = max(1, STEM_CHUNK_BYTES // per_image)
        if x.shape[0] <= chunk:
            return first.downsample(self.stem(x))
        return torch.cat([first.downsample(self.stem(part)) for part in x.split(chunk)])


# ------------------------------------------------------------------------------------------ variants
def _build(name: str, overrides: dict) -> MamKPD:
    known = {f.name for f in dataclasses.fields(MamKPDConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{name}: unknown MamKPD config field(s) {unknown}; fields are {sorted(known)}")
    settings = {**VARIANTS[name], **overrides}
    input_size = settings.pop("input_size", MamKPDConfig.input_size)
    config = MamKPDConfig(**settings)  # at the default input size, which every variant accepts
    config.input_size = check_input_size(input_size, config.stride, name)
    return MamKPD(config)


_BASE = dict(depths=(2, 4, 6), dims=(96, 192, 384))
VARIANTS: dict[str, dict] = {
    # Table 1
    "mamkpd_s": dict(_BASE, stem=False),
    "mamkpd_b": dict(_BASE),
    "mamkpd_l": dict(depths=(2, 4, 6), dims=(128, 256, 512)),
    # Table 5 (ablations of MamKPD-B's blocks and dimensions)
    "mamkpd_t5a": dict(depths=(1, 2, 3), dims=(96, 192, 384)),
    "mamkpd_t5b": dict(depths=(2, 4, 6, 3), dims=(64, 128, 256, 512)),
    "mamkpd_t5c": dict(depths=(2, 4, 6), dims=(64, 128, 256)),
    "mamkpd_t5d": dict(depths=(2, 4, 6), dims=(192, 384, 768)),
    # Figure 3 (ablations of the stem and the CMM on MamKPD-B)
    "mamkpd_fig3_base": dict(_BASE, stem=False, downsampling="linear"),
    "mamkpd_fig3_wo_stem": dict(_BASE, stem=False),
    "mamkpd_fig3_wo_cmm": dict(_BASE, downsampling="linear"),
    "mamkpd_fig3_w_pm": dict(_BASE, downsampling="patch_merging"),
}


# Other readings of what the paper leaves open, as config overrides on top of the defaults: the report
# shows how Table 1's params and GFLOPs move under each.
ALTERNATIVE_READINGS: dict[str, dict] = {
    "defaults (d_state 8, no z-gate, no MLP, decoder dims[-1]/4)": {},
    "d_state 16 (Mamba/VMamba v0)": {"d_state": 16},
    "d_state 1 (VMamba v2)": {"d_state": 1},
    "z-gate on": {"z_gate": True},
    "MLP ratio 4 after each SS2D": {"mlp_ratio": 4.0},
    "decoder 256 wide (SimpleBaseline/ViTPose)": {"decoder_width": 256},
    "no SS2D-CMM gate": {"context_gate": False},
    # the paper trains from scratch without saying how it initialises; moves no count, only training
    "PyTorch default init (not VMamba's)": {"init": "pytorch"},
}


# ------------------------------------------------------------------------------- registered variants
# One explicit factory per variant (timm-style): each takes MamKPDConfig fields as keyword overrides. Each has
# a selective scan (scan_backend) and is built from the paper's text, which leaves details open.
_ABILITIES = dict(has_scan=True, tolerance_class="reimplementation")


@register_model("mamkpd", tags=("table1",), **_ABILITIES)
def mamkpd_s(**kwargs) -> MamKPD:
    """MamKPD-Small (Table 1): MamKPD-Base without the stem."""
    return _build("mamkpd_s", kwargs)


@register_model("mamkpd", tags=("table1",), **_ABILITIES)
def mamkpd_b(**kwargs) -> MamKPD:
    """MamKPD-Base (Table 1): blocks (2, 4, 6), dims (96, 192, 384), with the stem."""
    return _build("mamkpd_b", kwargs)


@register_model("mamkpd", tags=("table1",), **_ABILITIES)
def mamkpd_l(**kwargs) -> MamKPD:
    """MamKPD-Large (Table 1): blocks (2, 4, 6), dims (128, 256, 512)."""
    return _build("mamkpd_l", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_t5a(**kwargs) -> MamKPD:
    """Table 5 (a): MamKPD-B with half the blocks, (1, 2, 3)."""
    return _build("mamkpd_t5a", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_t5b(**kwargs) -> MamKPD:
    """Table 5 (b): a fourth stage, blocks (2, 4, 6, 3), dims (64, 128, 256, 512)."""
    return _build("mamkpd_t5b", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_t5c(**kwargs) -> MamKPD:
    """Table 5 (c): MamKPD-B's blocks at dims (64, 128, 256)."""
    return _build("mamkpd_t5c", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_t5d(**kwargs) -> MamKPD:
    """Table 5 (d): MamKPD-B's blocks at twice its dims, (192, 384, 768)."""
    return _build("mamkpd_t5d", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_fig3_base(**kwargs) -> MamKPD:
    """Figure 3 Base: MamKPD-B without the stem and with linear patch embeddings instead of the CMM."""
    return _build("mamkpd_fig3_base", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_fig3_wo_stem(**kwargs) -> MamKPD:
    """Figure 3 w/o-Stem: MamKPD-B without the stem (the same network as MamKPD-S)."""
    return _build("mamkpd_fig3_wo_stem", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_fig3_wo_cmm(**kwargs) -> MamKPD:
    """Figure 3 w/o-CMM: MamKPD-B with linear patch embeddings instead of the CMM."""
    return _build("mamkpd_fig3_wo_cmm", kwargs)


@register_model("mamkpd", **_ABILITIES)
def mamkpd_fig3_w_pm(**kwargs) -> MamKPD:
    """Figure 3 w-PM: MamKPD-B with patch merging instead of the CMM."""
    return _build("mamkpd_fig3_w_pm", kwargs)


def config_of(name: str, **overrides) -> MamKPDConfig:
    """The config a registered variant would be built with (no weights allocated)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown MamKPD variant {name!r}; variants: {', '.join(VARIANTS)}")
    return MamKPDConfig(**{**VARIANTS[name], **overrides})


__all__ = [
    "ALTERNATIVE_READINGS",
    "DOWNSAMPLING",
    "MamKPD",
    "MamKPDConfig",
    "VARIANTS",
    "config_of",
    *VARIANTS,  # the registered factories, one function per variant
]
