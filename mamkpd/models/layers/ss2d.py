"""VMamba's 2D selective scan (SS2D) and the pre-norm residual block built on it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops import ScanBackend, check_scan_backend, cross_selective_scan, resolve_backend, selective_scan
from .cross_scan import cross_merge, cross_scan, cross_scan_per_direction

DIRECTIONS = 4  # cross scan: rows, columns, and both reversed


class SS2D(nn.Module):
    """in_proj -> depthwise conv -> SiLU -> 4-direction cross scan -> selective scan -> merge -> norm
    -> (z gate) -> out_proj, on channels-last input (B, H, W, C).

    ``scan_backend`` is the backend asked for (a name or ``auto``); :attr:`scan` is the backend that runs,
    resolved for the parameters' device when the module is built, moved or given another backend, never per
    forward. A named backend that cannot run on that device (``triton`` on a CPU, before ``.cuda()``) leaves
    :attr:`scan` None, and a forward there says why.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 8,
        ssm_ratio: float = 2.0,
        dt_rank: int | None = None,
        d_conv: int = 3,
        z_gate: bool = False,
        scan_backend: str = "auto",
        fused_cross_scan: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        dt_rank = dt_rank or math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.dt_rank, self.z_gate = d_inner, d_state, dt_rank, z_gate
        self.fused_cross_scan = fused_cross_scan
        self.in_proj = nn.Linear(d_model, d_inner * (2 if z_gate else 1), bias=False)
        self.conv2d = (
            nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
            if d_conv > 1
            else nn.Identity()
        )
        self.x_proj_weight = nn.Parameter(torch.empty(DIRECTIONS, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(DIRECTIONS, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(DIRECTIONS, d_inner))
        self.A_logs = nn.Parameter(torch.empty(DIRECTIONS * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(DIRECTIONS * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_ssm(dt_min, dt_max, dt_init_floor)
        self.scan_backend = scan_backend  # resolves it for the parameters' device

    @property
    def scan_backend(self) -> str:
        return self._scan_request

    @scan_backend.setter
    def scan_backend(self, name: str) -> None:
        check_scan_backend(name)  # an unknown name fails here, wherever the module is
        self._scan_request = name
        self._resolve_scan()

    def _resolve_scan(self) -> None:
        device = self.A_logs.device
        self.scan: ScanBackend | None = None
        self._scan_unavailable = f"SS2D was built on the {device} device and has not been moved to a real one"
        if device.type == "meta":
            return
        try:
            self.scan = resolve_backend(self._scan_request, device)
        except RuntimeError as exc:
            self._scan_unavailable = str(exc)

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .float(), to_empty(): the tensors may now live on another device
        module = super()._apply(fn, recurse)
        self._resolve_scan()
        return module

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        # Mamba's initialisation: dt log-uniform in [dt_min, dt_max] through an inverse softplus bias,
        # A = -(1..N) per channel (S4D-real), D = 1.
        bound = 1.0 / math.sqrt(self.d_inner)
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        dt_std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_projs_weight, -dt_std, dt_std)
        dt = torch.exp(
            torch.rand(DIRECTIONS, self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_logs.copy_(
            torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(DIRECTIONS * self.d_inner, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        bsz, height, width, _ = x.shape
        x = self.in_proj(x)
        if self.z_gate:
            x, z = x.chunk(2, dim=-1)
        # the depthwise conv keeps the channels-last memory of its input: x stays (B, H, W, d_inner) in memory
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)), inplace=not torch.is_grad_enabled()).permute(0, 2, 3, 1)
        # x_proj of all four directions as one GEMM on the image in its own order; only its few output channels
        # (dt_rank + 2 d_state per direction) are then put in each direction's order, not the d_inner inputs
        x_dbl = F.linear(x.reshape(bsz, height * width, self.d_inner), self.x_proj_weight.flatten(0, 1))
        x_dbl = x_dbl.view(bsz, height, width, DIRECTIONS, -1).permute(0, 3, 4, 1, 2)  # (B, 4, R + 2N, H, W)
        scan_args = dict(
            A=-torch.exp(self.A_logs.float()),
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.flatten().float(),
            delta_softplus=True,
        )
        backend = self.scan
        if backend is None:
            raise RuntimeError(self._scan_unavailable)
        if self.fused_cross_scan and backend.cross is not None:
            # one kernel reads x once and writes the merged y; delta, B and C stay at spatial positions
            # delta's projection goes into the op with its low-rank input: a kernel that projects as it reads
            # never writes the (B, 4, d_inner, H, W) delta, the largest tensor of the block
            dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
            y = cross_selective_scan(
                x.permute(0, 3, 1, 2), dts, B=Bs, C=Cs, backend=backend, delta_proj_weight=self.dt_projs_weight,
                **scan_args,
            )  # fmt: skip
        else:
            dts, Bs, Cs = torch.split(
                cross_scan_per_direction(x_dbl), [self.dt_rank, self.d_state, self.d_state], dim=2
            )
            # (B, 4, d_inner, L) straight out of the batched GEMM, contiguous as the scan takes it
            dts = torch.matmul(self.dt_projs_weight.expand(bsz, -1, -1, -1), dts)
            ys = selective_scan(
                cross_scan(x.permute(0, 3, 1, 2)).flatten(1, 2),
                dts.flatten(1, 2),
                B=Bs,
                C=Cs,
                backend=backend,
                **scan_args,
            )
            y = cross_merge(ys.view(bsz, DIRECTIONS, self.d_inner, height * width), height, width)
        y = self.out_norm(y.permute(0, 2, 3, 1))
        if self.z_gate:
            y = y * F.silu(z)
        return self.out_proj(y)


def scan_backend_of(model: nn.Module) -> str | None:
    """The name of the scan backend ``model``'s SS2D blocks run (never ``auto``); None for a model without a
    selective scan, or one whose backend cannot run where it is. What protocols record."""
    for module in model.modules():
        if isinstance(module, SS2D):
            return module.scan.name if module.scan is not None else None
    return None


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or at rate 0)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class SS2DBlock(nn.Module):
    """x + SS2D(LN(x)), then, when mlp_ratio > 0, x + MLP(LN(x)). Channels-last."""

    def __init__(self, dim: int, drop_path: float = 0.0, mlp_ratio: float = 0.0, **ss2d_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path)
        self.mlp = None
        if mlp_ratio > 0:
            hidden = int(dim * mlp_ratio)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        # the residual added into the branch's own fresh output (no tensor allocated per block: at batch 8 a
        # new one costs its page faults); an add's backward needs neither input, so this is safe with autograd
        x = self.drop_path(self.op(self.norm(x))).add_(x)
        if self.mlp is not None:
            x = self.drop_path(self.mlp(self.norm2(x))).add_(x)
        return x
