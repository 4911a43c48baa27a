"""Baselines: parameter counts against the published models, forward shapes at the paper's sizes,
bad arguments."""

from __future__ import annotations

import functools

import pytest
import torch

import mamkpd
from mamkpd.paper.published import PUBLISHED_PARAMS
from mamkpd.paper.tolerances import PARAMS_REL_BASELINE

BASELINES = sorted(PUBLISHED_PARAMS)
RTMO = ("rtmo_s", "rtmo_m", "rtmo_l")  # one-stage: a whole image per sample, decoded by RTMO itself
KAPAO = ("kapao_s", "kapao_m", "kapao_l")  # one-stage at 1280x1280, decoded by KAPAO itself
RTMPOSE = ("rtmpose_t", "rtmpose_s", "rtmpose_m", "rtmpose_l")  # top-down, SimCC vectors
TOKENPOSE_AND_PPT = ("tokenpose_s_v1", "tokenpose_b", "tokenpose_l_d6", "tokenpose_l_d24", "ppt_s", "ppt_b", "ppt_l_d6")
I2RNET = ("i2rnet_hrformer_b",)  # top-down heatmaps, DarkPose's test code too
# the input sizes of Table 2 cells the paper prints at 384x288 (Lite-HRNet's and Dite-HRNet's GFLOPs and AP)
AT_384X288 = ("litehrnet_30_384x288", "ditehrnet_30_384x288")
VITPOSE = ("vitpose_s", "vitpose_b", "vitpose_l", "vitpose_s_simple", "vitpose_b_simple", "vitpose_l_simple")


@functools.cache
def built(name: str) -> torch.nn.Module:
    """Each model is built once per session (ViTPose-L or SBL-152 take seconds)."""
    return mamkpd.create_model(name).eval()


def test_every_baseline_is_registered_with_its_sample_kind():
    names = set(mamkpd.list_models())
    assert set(BASELINES) <= names
    for name in BASELINES:
        info = mamkpd.model_info(name)
        if name in RTMO:
            assert info.whole_image and info.sample == "whole image (640x640)" and info.input_size == (640, 640)
        elif name in KAPAO:
            assert info.whole_image and info.sample == "whole image (1280x1280)" and info.input_size == (1280, 1280)
        else:
            size = (384, 288) if name in AT_384X288 else (256, 192)
            assert not info.whole_image and info.sample == "person crop" and info.input_size == size
        own = {
            **{n: "rtmo" for n in RTMO},
            **{n: "kapao" for n in KAPAO},
            **{n: "simcc" for n in RTMPOSE},
            **{n: "udp" for n in VITPOSE},
        }
        # TokenPose, PPT and I²R-Net train and test with DarkPose's code
        own.update({n: "darkpose" for n in TOKENPOSE_AND_PPT + I2RNET})
        assert info.codec == own.get(name, "msra")  # the others test with MSRA heatmaps
        assert not info.has_scan and info.tolerance_class == "official"  # the authors' architectures, no scan


@pytest.mark.parametrize("name", BASELINES)
def test_params_match_the_published_model(name):
    with torch.device("meta"):  # counting needs shapes only
        model = mamkpd.create_model(name)
    params = sum(p.numel() for p in model.parameters())
    published = PUBLISHED_PARAMS[name].params_m * 1e6
    assert abs(params - published) / published <= PARAMS_REL_BASELINE, (name, params, published)


@pytest.mark.parametrize("name", ["sbl_res50", "hrnet_w32", "vitpose_s", "vitpose_s_simple", "vitpose_b"])
def test_topdown_forward_gives_quarter_resolution_heatmaps(name):
    model = built(name)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 192))
    assert out.shape == (1, 17, 64, 48)
    assert torch.isfinite(out).all()


def forward_on_meta(name: str):
    with torch.device("meta"):
        model = mamkpd.create_model(name).eval()
        return model(torch.empty(1, 3, *mamkpd.model_info(name).input_size))


@pytest.mark.parametrize("name", ["sbl_res152", "hrnet_w48", "vitpose_l", "vitpose_l_simple"])
def test_large_models_forward_on_meta(name):
    assert forward_on_meta(name).shape == (1, 17, 64, 48)


@pytest.mark.parametrize("name", ["rtmo_m", "rtmo_l"])
def test_large_rtmo_forward_on_meta(name):
    cells = sum((640 // s) ** 2 for s in (16, 32))
    assert [o.shape[:2] for o in forward_on_meta(name)] == [(1, cells)] * 4


def test_keypoint_count_and_input_size_are_arguments():
    model = mamkpd.create_model("vitpose_s", num_keypoints=16, input_size=(256, 256)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 16, 64, 64)
    with torch.device("meta"):
        model = mamkpd.create_model("hrnet_w32", num_keypoints=16, input_size=(256, 256)).eval()
        assert model(torch.empty(1, 3, 256, 256)).shape == (1, 16, 64, 64)


@pytest.mark.parametrize(
    "name,size", [("hrnet_w32", (250, 192)), ("vitpose_b", (256, 190)), ("sbl_res50", (256,)), ("rtmo_s", (600, 640))]
)
def test_bad_input_size_is_a_clear_error(name, size):
    with pytest.raises(ValueError, match="input_size"):
        mamkpd.create_model(name, input_size=size)


def test_models_say_which_codec_they_were_trained_with():
    assert mamkpd.model_info("vitpose_s").codec == "udp"
    assert mamkpd.model_info("sbl_res50").codec == "msra"
    assert mamkpd.model_info("rtmo_s").codec == "rtmo"  # decodes its own outputs
