"""Each family's initialisation for training from scratch, read off freshly built models, and a loaded
checkpoint overriding it.

HRNet / SimpleBaseline: HRNet's init_weights (convs and deconvs normal(0, 0.001), zero biases, BN 1/0).
ViTPose: the official backbone init (Linear truncated normal 0.02, zero bias, LayerNorm 1/0) and the
official drop-path rates. MamKPD: VMamba's model-level init by default (the same Linear/LayerNorm rule),
PyTorch's defaults as a recorded alternative reading; SS2D's own A_logs, Ds and dt init unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mamkpd
from mamkpd.models.checkpoint import load_weights_from_state
from mamkpd.models.layers import SS2D
from mamkpd.models.mamkpd import ALTERNATIVE_READINGS


def _weights(model: nn.Module, kinds) -> torch.Tensor:
    return torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, kinds)])


def _biases(model: nn.Module, kinds) -> torch.Tensor:
    found = [m.bias.detach().flatten() for m in model.modules() if isinstance(m, kinds) and m.bias is not None]
    return torch.cat(found) if found else torch.zeros(0)


def _assert_norms_are_identity(model: nn.Module, kinds) -> None:
    for m in model.modules():
        if isinstance(m, kinds) and m.weight is not None:
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0), m


@pytest.mark.parametrize("name", ["hrnet_w32", "sbl_res50"])
def test_hrnet_init(name):
    torch.manual_seed(0)
    model = mamkpd.create_model(name)
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    w = _weights(model, convs)
    assert w.mean().abs() < 1e-5 and w.std().item() == pytest.approx(0.001, rel=0.01)
    assert torch.all(_biases(model, convs) == 0)
    _assert_norms_are_identity(model, nn.BatchNorm2d)


def _linear_trunc_normal(model: nn.Module) -> None:
    w = _weights(model, nn.Linear)
    assert w.std().item() == pytest.approx(0.02, rel=0.01) and w.abs().max() <= 2.0  # timm's bounds
    assert torch.all(_biases(model, nn.Linear) == 0)
    _assert_norms_are_identity(model, nn.LayerNorm)


def test_vitpose_init_and_drop_path_rates():
    torch.manual_seed(0)
    model = mamkpd.create_model("vitpose_s")
    _linear_trunc_normal(model.backbone)
    head = _weights(model.head, (nn.Conv2d, nn.ConvTranspose2d))
    assert head.std().item() == pytest.approx(0.001, rel=0.05)
    simple = mamkpd.create_model("vitpose_s_simple").head.final_layer
    assert simple.weight.std().item() == pytest.approx(0.001, rel=0.1) and torch.all(simple.bias == 0)
    for name, last in (("vitpose_s", 0.1), ("vitpose_b", 0.3), ("vitpose_l", 0.5)):
        with torch.device("meta"):
            blocks = mamkpd.create_model(name).backbone.blocks
        rates = [b.drop_path.rate for b in blocks]
        assert rates[0] == 0.0 and rates[-1] == pytest.approx(last)
        assert all(b > a for a, b in zip(rates, rates[1:], strict=False))


def test_mamkpd_vmamba_init_keeps_the_ss2d_init():
    torch.manual_seed(0)
    model = mamkpd.create_model("mamkpd_s")
    assert model.config.init == "vmamba"
    _linear_trunc_normal(model)
    for m in model.modules():
        if isinstance(m, SS2D):
            d_state = m.A_logs.shape[1]
            expected = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).expand_as(m.A_logs)
            assert torch.allclose(m.A_logs, expected) and torch.all(m.Ds == 1)
            dt = nn.functional.softplus(m.dt_projs_bias)
            assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6
            bound = m.dt_projs_weight.shape[-1] ** -0.5  # dt_rank**-0.5, Mamba's dt_init "random"
            assert m.dt_projs_weight.abs().max() <= bound and m.dt_projs_weight.std() > bound / 3


def test_mamkpd_pytorch_default_init_is_a_recorded_reading():
    assert {"init": "pytorch"} in ALTERNATIVE_READINGS.values()
    torch.manual_seed(0)
    model = mamkpd.create_model("mamkpd_s", init="pytorch")
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    # PyTorch's default: kaiming uniform, bound 1/sqrt(fan_in), not a 0.02 normal
    bound = 1 / math.sqrt(linear.in_features)
    assert linear.weight.abs().max() <= bound and linear.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    with pytest.raises(ValueError, match="init must be one of"):
        mamkpd.create_model("mamkpd_s", init="xavier")


@pytest.mark.parametrize("name", ["sbl_res50", "vitpose_s", "mamkpd_s"])
def test_a_loaded_checkpoint_overrides_the_init(name):
    torch.manual_seed(1)
    source = mamkpd.create_model(name)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    model = mamkpd.create_model(name)
    load_weights_from_state(model, source.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
