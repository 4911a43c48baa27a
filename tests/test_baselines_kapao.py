"""KAPAO against the official code (wmcnally/kapao, tests/fixtures/kapao_forward.npz): the state_dict layout and
parameter count of its build, the Detect head's raw maps and inference output with name-seeded weights, and
val.py's decoding (pose and keypoint objects, NMS, fusion) under its default and combined-NMS settings."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_weights import fill_seeded

import mamkpd
from baselines.kapao import KAPAODecoding

FIXTURE = Path(__file__).parent / "fixtures" / "kapao_forward.npz"
SIZES = ("s", "m", "l")
DECODE_SEEDS = (43, 44, 45, 46)  # the fixture's seeded maps: 2 * randn, one generator per stride 8, 16, 32, 64
DECODE_HW = (256, 192)
# make_reference_fixtures.py's KAPAO_DECODE_CASES
DECODINGS = {
    "default": KAPAODecoding(),
    "combined": KAPAODecoding(
        conf_thres=0.1, iou_thres=0.45, conf_thres_kp=0.2, iou_thres_kp=0.45, conf_thres_kp_person=0.2, overwrite_tol=25
    ),
}


@functools.cache
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return dict(f)


@functools.cache
def seeded(size: str) -> torch.nn.Module:
    """The suite's model with the fixture's name-seeded weights, loaded strictly in the official layout."""
    hw = tuple(int(v) for v in reference()[f"{size}_input_hw"])
    model = mamkpd.create_model(f"kapao_{size}", input_size=hw).eval()
    state = model.state_dict()
    fill_seeded(model, keep=("anchors", "anchor_grid"))
    model.load_state_dict(dict(model.state_dict()), strict=True)
    assert set(state) == set(model.state_dict())
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", SIZES)
def test_state_dict_is_the_official_layout_and_count(size):
    ref = reference()
    with torch.device("meta"):
        model = mamkpd.create_model(f"kapao_{size}")
    state = model.state_dict()
    assert list(state) == list(ref[f"{size}_names"])
    assert [list(t.shape) for t in state.values()] == json.loads(str(ref[f"{size}_shapes"]))
    assert mamkpd.count_params(f"kapao_{size}") == int(ref[f"{size}_params"])


def test_anchor_buffers_are_the_official_ones():
    """The anchors are not name-seeded: the fixture's state layout fixes their shapes, the raw-map test cannot see
    them, so their values (in cells of each stride, and in pixels) are checked against the configs here."""
    detect = mamkpd.create_model("kapao_s", input_size=(64, 64)).model[-1]
    p3 = torch.tensor([[19.0, 27], [44, 40], [38, 94]])
    p6 = torch.tensor([[436.0, 615], [739, 380], [925, 792]])
    assert torch.equal(detect.anchor_grid[0].flatten(0, -2), p3) and torch.equal(
        detect.anchor_grid[3].flatten(0, -2), p6
    )
    assert torch.allclose(detect.anchors[0], p3 / 8) and torch.allclose(detect.anchors[3], p6 / 64)


@pytest.mark.parametrize("size", SIZES)
def test_raw_maps_equal_the_official_model(size):
    ref = reference()
    hw = tuple(int(v) for v in ref[f"{size}_input_hw"])
    x = torch.randn((1, 3, *hw), generator=torch.Generator().manual_seed(41))
    with torch.no_grad():
        levels = seeded(size)(x)
    assert len(levels) == 4
    for i, level in enumerate(levels):
        expected = ref[f"{size}_level{i}"]
        assert level.shape == expected.shape
        np.testing.assert_allclose(level.numpy(), expected, atol=1e-5 * np.abs(expected).max())
    if size == "s":  # Detect's inference transform: pixels, probabilities, keypoints
        np.testing.assert_allclose(seeded(size).dense(levels).numpy(), ref["s_dense"], rtol=1e-5, atol=1e-3)


def test_test_time_augmentation_equals_forward_augment():
    """Scales 0.8, 1 (flipped) and 1.2 as val.py runs them for the published test figures: every 7th row of the
    concatenated output and the column sums over all rows."""
    ref = reference()
    hw = tuple(int(v) for v in ref["tta_input_hw"])
    x = torch.randn((1, 3, *hw), generator=torch.Generator().manual_seed(41))
    with torch.no_grad():
        tta = seeded("s").dense_augmented(x)
    assert tta.shape[1] == int(ref["tta_count"])
    np.testing.assert_allclose(tta[:, ::7].numpy(), ref["tta_rows"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(tta.double().sum(1).numpy(), ref["tta_sums"], rtol=1e-5)
    people = seeded("s").predict(x, augment=True)[0]  # decoded like the plain output
    assert people["keypoints"].shape[1:] == (17, 2) and len(people["scores"]) > 0


def decode_maps() -> tuple[torch.Tensor, ...]:
    h, w = DECODE_HW
    return tuple(
        2.0 * torch.randn((1, 3, h // s, w // s, 57), generator=torch.Generator().manual_seed(seed))
        for seed, s in zip(DECODE_SEEDS, (8, 16, 32, 64), strict=True)
    )


@pytest.mark.parametrize("case", DECODINGS)
def test_decoding_equals_val_py(case):
    ref = reference()
    model = mamkpd.create_model("kapao_s", input_size=DECODE_HW).eval()
    (people,) = model.decode(decode_maps(), DECODINGS[case])
    poses = ref[f"{case}_poses"]
    assert len(people["scores"]) == len(ref[f"{case}_scores"]) > 10
    np.testing.assert_allclose(people["scores"].numpy(), ref[f"{case}_scores"], rtol=1e-6)
    np.testing.assert_array_equal(people["bboxes"].numpy(), ref[f"{case}_bboxes"])
    np.testing.assert_allclose(people["keypoints"].numpy(), poses[..., :2], atol=1e-3)
    np.testing.assert_allclose(people["keypoint_scores"].numpy(), poses[..., 2], atol=1e-6)
    # the fixture exercises the fusion: keypoint objects replaced keypoints of pose objects, of every type
    fused = (people["keypoint_scores"] > 0).sum(0).numpy()
    np.testing.assert_array_equal(fused, ref[f"{case}_fused"])
    assert fused.sum() > 20


def test_decode_without_people_and_bad_sizes():
    model = mamkpd.create_model("kapao_s", input_size=(64, 64)).eval()
    flat = tuple(torch.full((2, 3, 64 // s, 64 // s, 57), -20.0) for s in (8, 16, 32, 64))  # nothing confident
    for people in model.decode(flat):
        assert people["keypoints"].shape == (0, 17, 2) and people["bboxes"].shape == (0, 4)
    with pytest.raises(ValueError, match="multiples of 64"):
        mamkpd.create_model("kapao_s", input_size=(640, 608))


def test_registered_as_a_whole_image_model_and_counted_by_the_cli():
    info = mamkpd.model_info("kapao_m")
    assert info.whole_image and info.input_size == (1280, 1280) and not info.uses_codec
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mamkpd.cli",
            "complexity",
            "--model",
            "kapao_s",
            "--input-size",
            "128",
            "128",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)
    assert row["model"] == "kapao_s" and row["params"] == 12_559_980 and row["input_size"] == [128, 128]
    assert row["unsupported_ops"].keys() <= {"aten::silu_", "aten::add", "aten::max_pool2d"}  # free: no MACs
    # GFLOPs grow with the pixels: a whole-image model (a 1280x1280 count is 100x this one)
    assert 0.3 < row["gflops"] < 0.4
