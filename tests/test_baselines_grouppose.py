"""GroupPose against the official implementation (tests/fixtures/grouppose_forward.npz: Michel-liu/GroupPose's
``build_grouppose`` with name-seeded weights, its ``PostProcess``), and its whole-image input (DETR's resize of
the short side to 800, the long side at most 1333)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_weights import fill_seeded

import mamkpd
from mamkpd.codecs.letterbox import Placement, letterbox, resize_short_size

FIXTURE = Path(__file__).parent / "fixtures" / "grouppose_forward.npz"
INPUT_HW = (128, 160)  # the fixture's input
INPUT_SEED = 53


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def swin_t_outputs():
    model = mamkpd.create_model("grouppose_swin_t", input_size=INPUT_HW).eval()
    fill_seeded(model)
    x = torch.randn((2, 3, *INPUT_HW), generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        return model, model(x)


@pytest.mark.parametrize(("name", "case"), [("grouppose_swin_t", "swin_t"), ("grouppose_swin_l", "swin_l")])
def test_state_dict_is_the_official_layout(ref, name, case):
    """Same names in the same order (the official model shares pose_embed and class_embed with its decoder:
    both names are in its state_dict) and shapes; the official state_dict loads strictly."""
    with torch.device("meta"):
        model = mamkpd.create_model(name)
    state = model.state_dict()
    names, shapes = list(ref[f"{case}_names"]), json.loads(str(ref[f"{case}_shapes"]))
    assert list(state) == names
    assert [list(t.shape) for t in state.values()] == shapes
    official = {n: torch.empty(s, device="meta", dtype=state[n].dtype) for n, s in zip(names, shapes, strict=True)}
    model.load_state_dict(official, strict=True, assign=True)


def test_swin_l_parameter_count_is_the_official_builds(ref):
    assert mamkpd.count_params("grouppose_swin_l") == int(ref["swin_l_params"]) == 219_655_280


def test_forward_equals_the_official_model(ref, swin_t_outputs):
    _, (logits, keypoints) = swin_t_outputs
    assert logits.shape == (2, 100, 2) and keypoints.shape == (2, 100, 17, 2)
    scale = np.abs(ref["logits"]).max()
    np.testing.assert_allclose(logits.numpy(), ref["logits"], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(keypoints.numpy(), ref["keypoints"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(ref["visibility"], 1 / (1 + np.exp(-1.0)), rtol=1e-6)


@pytest.mark.parametrize("case", ["post", "decode"])
def test_decode_equals_the_official_postprocess(ref, swin_t_outputs, case):
    """PostProcess's 50 best (pose, class) pairs, keypoints scaled to each image's original size; decode keeps the
    person class (label 1), which COCO's evaluation scores (the model's own outputs here favour class 0 alone)."""
    model, outputs = swin_t_outputs
    if case == "decode":
        outputs = (torch.from_numpy(ref["decode_logits"]), torch.from_numpy(ref["decode_points"]))
    placements = [Placement(1.0, (0.0, 0.0), tuple(hw), INPUT_HW) for hw in ((480, 640), (427, 640))]
    people = model.decode(outputs, placements=placements)
    for i, found in enumerate(people):
        person = ref[f"{case}_labels"][i] == 1
        expected = ref[f"{case}_keypoints"][i][person].reshape(-1, 17, 3)
        assert len(found["scores"]) == person.sum()
        np.testing.assert_allclose(found["scores"].numpy(), ref[f"{case}_scores"][i][person], rtol=1e-6)
        np.testing.assert_allclose(found["keypoints"].numpy(), expected[..., :2], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(found["keypoint_scores"].numpy(), expected[..., 2], rtol=1e-6)
        if len(expected):
            np.testing.assert_allclose(found["bboxes"][:, :2].numpy(), expected[..., :2].min(1), rtol=1e-6)
    if case == "decode":
        assert sum(len(p["scores"]) for p in people) > 20  # both classes among the 50 best


@pytest.mark.parametrize(
    ("image_hw", "expected"),
    [
        ((480, 640), (800, 1066)),  # landscape: the short side to 800, the long one truncated
        ((640, 480), (1066, 800)),
        ((427, 640), (800, 1199)),
        ((300, 1000), (400, 1333)),  # 800 would take the long side to 2667: the short side round(399.9)
        ((800, 1000), (800, 1000)),  # already there
    ],
)
def test_resize_short_sizes_are_detrs(image_hw, expected):
    assert resize_short_size(*image_hw, 800, 1333) == expected


def test_whole_image_input_is_rgb_normalised_with_imagenet_statistics():
    spec = mamkpd.create_model("grouppose_r50", input_size=(128, 64)).whole_image_input
    image = np.zeros((30, 40, 3), np.uint8)
    image[..., 0], image[..., 2] = 255, 51  # BGR: blue 255, red 51
    x, placement = letterbox(image, (60, 100), spec)
    assert x.shape == (3, 60, 80) and placement.image_hw == (30, 40) and placement.input_hw == (60, 80)
    # red (0.2 - 0.485) / 0.229, green (0 - 0.456) / 0.224, blue (1 - 0.406) / 0.225
    np.testing.assert_allclose(x[:, 30, 40].numpy(), [-1.244541, -2.035714, 2.64], atol=1e-4)
    np.testing.assert_allclose(placement.to_image(np.array([[80.0, 60.0]])), [[40.0, 30.0]])


def test_predict_in_image_pixels(swin_t_outputs):
    """predict(x, placements) = decode with each image's original size: keypoints within the image."""
    model, _ = swin_t_outputs
    x = torch.randn((1, 3, *INPUT_HW), generator=torch.Generator().manual_seed(1))
    placement = Placement(0.5, (0.0, 0.0), (256, 320), INPUT_HW)
    people = model.predict(x, placements=[placement])[0]
    in_input = model.predict(x)[0]
    np.testing.assert_allclose(people["keypoints"].numpy(), in_input["keypoints"].numpy() * 2, rtol=1e-5)


def test_input_too_small_for_the_queries():
    with pytest.raises(ValueError, match=r"^grouppose_r50: input_size must be \(H, W\) whose .* 100 queries"):
        mamkpd.create_model("grouppose_r50", input_size=(64, 48))
