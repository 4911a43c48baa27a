"""RTMPose against MMPose 1.3.2 itself (tests/fixtures/rtmpose_forward.npz): the official state_dict layout
loads strictly, the SimCC vectors of name-seeded weights on a seeded input equal the official ones, the flip
test decodes to the official keypoints; GFLOPs against the published figures."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_weights import seeded_tensor
from worker_groups import MODEL_COUNTS

import mamkpd
from mamkpd.codecs import build_codec
from mamkpd.engine import predict_outputs
from mamkpd.harness.measure.complexity import measure_complexity
from mamkpd.models.checkpoint import load_weights_from_state, unwrap_state_dict
from mamkpd.paper.published import PUBLISHED_PARAMS

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "rtmpose_forward.npz")
CASES = {"t": "rtmpose_t", "m": "rtmpose_m", "t_small": "rtmpose_t"}
INPUT_SEED = 37  # make_reference_fixtures.RTMPOSE_INPUT_SEED
COCO_FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def official_state(case: str) -> dict[str, torch.Tensor]:
    """The official model's state_dict (its names and shapes, recorded in the fixture), name-seeded."""
    names = FIXTURE[f"{case}_names"].tolist()
    shapes = json.loads(str(FIXTURE[f"{case}_shapes"]))
    return {n: seeded_tensor(n, tuple(s)) for n, s in zip(names, shapes, strict=True)}


@functools.cache
def seeded_model(case: str) -> torch.nn.Module:
    hw = tuple(int(v) for v in FIXTURE[f"{case}_input_hw"])
    model = mamkpd.create_model(CASES[case], input_size=hw).eval()
    report = load_weights_from_state(model, official_state(case), source=f"official {case}")
    assert report.clean and report.layout == "native", report.summary()
    return model


def seeded_input(case: str) -> torch.Tensor:
    hw = tuple(int(v) for v in FIXTURE[f"{case}_input_hw"])
    batch = int(FIXTURE[f"{case}_batch"])
    return torch.randn((batch, 3, *hw), generator=torch.Generator().manual_seed(INPUT_SEED))


@pytest.mark.parametrize("case", sorted(CASES))
def test_simcc_vectors_equal_the_official_model(case):
    with torch.no_grad():
        pred_x, pred_y = seeded_model(case)(seeded_input(case))
    ref_x, ref_y = FIXTURE[f"{case}_pred_x"], FIXTURE[f"{case}_pred_y"]
    assert pred_x.shape == ref_x.shape and pred_y.shape == ref_y.shape
    scale = max(np.abs(ref_x).max(), np.abs(ref_y).max())
    assert np.abs(pred_x.numpy() - ref_x).max() <= 1e-4 * scale
    assert np.abs(pred_y.numpy() - ref_y).max() <= 1e-4 * scale


def test_our_names_and_shapes_are_the_official_ones():
    for case, name in CASES.items():
        hw = tuple(int(v) for v in FIXTURE[f"{case}_input_hw"])
        with torch.device("meta"):
            ours = {k: tuple(v.shape) for k, v in mamkpd.create_model(name, input_size=hw).state_dict().items()}
        official = dict(
            zip(FIXTURE[f"{case}_names"].tolist(), map(tuple, json.loads(str(FIXTURE[f"{case}_shapes"]))), strict=True)
        )
        assert ours == official


def test_released_checkpoint_loads_strictly():
    """A release as MMPose saves it: ``meta`` and ``state_dict`` holding backbone.* and head.* only (its data
    preprocessor's mean/std are not persistent)."""
    state = official_state("t_small")
    assert not any(k.startswith("data_preprocessor") for k in state)
    model = mamkpd.create_model("rtmpose_t", input_size=(128, 96))
    report = load_weights_from_state(model, unwrap_state_dict({"meta": {"epoch": 420}, "state_dict": state}))
    assert report.layout == "native" and report.clean and model.input_channels == "rgb"
    assert torch.equal(model.head.cls_x.weight, state["head.cls_x.weight"])


def test_flip_test_decodes_to_the_official_keypoints():
    """predict_outputs + the SimCC codec (flip_back, average, decode) against RTMCCHead.predict(flip_test=True)."""
    model = seeded_model("t_small")
    codec = build_codec("simcc", (128, 96))
    with torch.no_grad():
        outputs = predict_outputs(model, seeded_input("t_small"), codec, COCO_FLIP_PAIRS)
    keypoints, scores = codec.decode(tuple(o.numpy() for o in outputs))
    assert np.array_equal(keypoints, FIXTURE["flip_keypoints"])
    assert np.allclose(scores, FIXTURE["flip_scores"], rtol=1e-4, atol=1e-7)


@MODEL_COUNTS
@pytest.mark.parametrize("name", ["rtmpose_t", "rtmpose_s", "rtmpose_m", "rtmpose_l"])
def test_gflops_match_the_published_figure(name):
    c = measure_complexity(name)
    assert c.uncounted_non_free == {}, c.unsupported_ops
    published = PUBLISHED_PARAMS[name].gflops
    assert abs(c.gflops - published) <= 0.005, (name, c.gflops, published)  # printed to 0.01


def test_input_size_sets_the_bins_and_is_checked():
    with torch.device("meta"):
        model = mamkpd.create_model("rtmpose_s", num_keypoints=16, input_size=(256, 256)).eval()
        pred_x, pred_y = model(torch.empty(1, 3, 256, 256))
    assert pred_x.shape == (1, 16, 512) and pred_y.shape == (1, 16, 512)
    with pytest.raises(ValueError, match="rtmpose_m: input_size must be .* multiples of 32"):
        mamkpd.create_model("rtmpose_m", input_size=(256, 200))
