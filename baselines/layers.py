"""Layers that several baselines build from MMCV: one reading of each, under MMCV's state_dict names."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

# MMCV's ConvModule builds these activations with inplace=True (the others have no such argument)
INPLACE_ACTIVATIONS = (nn.ReLU, nn.SiLU)


class ConvModule(nn.Module):
    """MMCV's ConvModule as the baselines configure it: ``conv`` (padding ``kernel // 2``, a bias only when no
    norm follows), ``bn`` (BatchNorm2d with ``bn_eps``/``bn_momentum``; None with ``norm=False``), then ``act``
    (an activation class; None: none). ``conv`` may be given instead (Dite-HRNet's bank of dynamic kernels)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: Callable[..., nn.Module] | None = None,
        norm: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        conv: nn.Module | None = None,
    ):
        super().__init__()
        self.conv = conv or nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not norm)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum) if norm else None
        self.act = None if act is None else act(inplace=True) if act in INPLACE_ACTIVATIONS else act()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.act is None else self.act(x)
