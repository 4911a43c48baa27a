"""The model registry: explicit factories, discovery of the baselines through entry points, one builder that
also loads weights, one parameter count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mamkpd
import mamkpd.models.mamkpd as mamkpd_models
from mamkpd.models import registry


def test_every_variant_has_an_explicit_factory_of_its_name():
    for name in mamkpd_models.VARIANTS:
        factory = getattr(mamkpd_models, name)  # a module-level function, greppable as `def mamkpd_b`
        assert factory.__name__ == name and mamkpd.model_info(name).factory is factory


def test_baselines_are_found_through_the_entry_point_group():
    declared = {ep.value for ep in registry.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert declared == {"baselines"}  # pyproject.toml's [project.entry-points."mamkpd.models"]
    assert {"hrnet_w32", "sbl_res50", "vitpose_b", "rtmo_s"} <= set(mamkpd.list_models())


def test_without_entry_points_the_registry_says_how_to_install(monkeypatch):
    # what an uninstalled source tree sees: no package declares the group
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    monkeypatch.setattr(registry, "_providers_loaded", False)
    own = {n: i for n, i in registry._REGISTRY.items() if i.factory.__module__ == mamkpd_models.__name__}
    monkeypatch.setattr(registry, "_REGISTRY", own)
    with pytest.warns(UserWarning, match="no baselines registered.*install"):
        assert "mamkpd_b" in mamkpd.list_models()
    with pytest.raises(KeyError, match="unknown model 'hrnet_w32'.*no baselines registered.*install.sh"):
        mamkpd.model_info("hrnet_w32")


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)  # 8*3*3*3 weights + 8 biases = 224
        self.bn = nn.BatchNorm2d(8)  # 8 + 8 affine; running statistics are buffers, not parameters
        self.fc = nn.Linear(8, 5, bias=False)  # 40


def test_count_params_of_a_module_by_hand():
    assert mamkpd.count_params(_Tiny()) == 224 + 16 + 40


@pytest.mark.parametrize(
    "name, published_m, tolerance_m",
    [
        ("hrnet_w32", 28.5, 0.05),  # HRNet README, pose_hrnet_w32 256x192
        ("sbl_res50", 34.0, 0.05),  # HRNet README, pose_resnet_50 256x192
        ("vitpose_b", 90.0, 0.05),  # official ViTPose-B, classic decoder: ViT-B's 86M and two 256-wide deconvs
    ],
)
def test_count_params_of_registered_models_matches_their_authors(name, published_m, tolerance_m):
    assert abs(mamkpd.count_params(name) / 1e6 - published_m) <= tolerance_m


def test_create_model_loads_a_checkpoint_path_strictly(tmp_path):
    source = mamkpd.create_model("mamkpd_t5a", input_size=(64, 48))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")  # an MMPose-style container
    torch.manual_seed(1)
    loaded = mamkpd.create_model("mamkpd_t5a", input_size=(64, 48), checkpoint_path=tmp_path / "w.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="does not match mamkpd_t5c .*78 missing from the checkpoint"):
        mamkpd.create_model("mamkpd_t5c", input_size=(64, 48), checkpoint_path=tmp_path / "w.pth")
