"""Each model family's own weight initialisation, for training from scratch (a loaded checkpoint overrides it).

- ``hrnet_init``: HRNet's ``init_weights`` (``pose_hrnet.py``; ``pose_resnet.py`` without pretraining does
  the same for SimpleBaseline): every conv and transposed conv normal(0, 0.001) with zero bias,
  BatchNorm weight 1 and bias 0.
- ``trunc_normal_init``: the model-level init of ViT (ViTPose's backbone ``init_weights``) and of VMamba
  (``VSSM._init_weights``): Linear weights truncated normal with std 0.02 (timm's bounds, +-2 absolute),
  zero Linear biases, LayerNorm weight 1 and bias 0. Parameters that are not Linear or LayerNorm
  modules (SS2D's A_logs, Ds, dt and x projections, position embeddings) keep their own initialisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["INITS", "hrnet_init", "trunc_normal_init"]


def hrnet_init(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def trunc_normal_(tensor: Tensor, std: float, a: float = -2.0, b: float = 2.0) -> Tensor:
    """Normal(0, std) truncated to [a, b] (timm's and torch's ``trunc_normal_``, whose bounds are absolute).

    With the bounds at least 8 std away, as timm's +-2 are from std 0.02, a draw lands outside with
    probability below 1e-15: the truncated and the plain normal are then one distribution, drawn here as the
    plain normal clamped to the bounds (torch's inverse-CDF sampler is several times slower on a CPU).
    """
    if min(-a, b) < 8 * std:
        return nn.init.trunc_normal_(tensor, std=std, a=a, b=b)
    return nn.init.normal_(tensor, std=std).clamp_(a, b)


def trunc_normal_init(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# MamKPD's readings of its initialisation: VMamba's model-level init, or PyTorch's defaults left as they are
INITS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "vmamba": trunc_normal_init,
    "pytorch": lambda model: model,
}
