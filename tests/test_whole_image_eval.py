"""The whole-image (one-stage) evaluation path: KAPAO's letterbox and mapping back against the official
functions (tests/fixtures/kapao_letterbox.npz: datasets.py load_image, augmentations.py letterbox, general.py
scale_coords), KAPAO's fusion in image pixels, and `mamkpd evaluate` on the COCO samples for RTMO, KAPAO and
GroupPose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_samples import requires_samples, sample
from test_cli_evaluate import mamkpd_cli

import mamkpd
from baselines.kapao import KAPAODecoding
from mamkpd.codecs.letterbox import Placement, WholeImageInput, letterbox
from mamkpd.engine.whole_image import whole_image_coco_results

FIXTURE = Path(__file__).parent / "fixtures" / "kapao_letterbox.npz"
LETTERBOX_SIZE = (128, 128)  # the fixture's --imgsz
SAMPLE_IDS = {785, 40083, 196141, 197388}


def kapao_spec() -> WholeImageInput:
    return mamkpd.create_model("kapao_s", input_size=(64, 64)).whole_image_input


@pytest.mark.parametrize("image", range(5))
def test_kapao_letterbox_equals_the_official_one(image):
    ref = np.load(FIXTURE)
    spec = kapao_spec()
    cases = [name for name in ("rect", "square") if f"image{image}_{name}" in ref.files]
    for name in cases:
        x, placement = letterbox(ref[f"image{image}"], LETTERBOX_SIZE, spec, rect=name == "rect")
        expected = ref[f"image{image}_{name}"]  # uint8 RGB CHW, before val.py's / 255
        assert x.shape == expected.shape, name
        np.testing.assert_array_equal((x * 255).round().numpy().astype(np.uint8), expected)
        assert x.max() <= 1.0
        mapped = placement.to_image(ref[f"image{image}_{name}_points"])
        expected = ref[f"image{image}_{name}_mapped"]
        # scale_coords clips the first two (x, y) pairs to the image (KAPAO.decode does that itself)
        h0, w0 = ref[f"image{image}"].shape[:2]
        np.testing.assert_allclose(np.clip(mapped[:2], 0, [w0, h0]), expected[:2], atol=1e-4)
        np.testing.assert_allclose(mapped[2:], expected[2:], atol=1e-4)
        assert placement.image_hw == (h0, w0)
        np.testing.assert_allclose(placement.to_input(mapped), ref[f"image{image}_{name}_points"], atol=1e-4)


def test_letterbox_refuses_bad_input():
    with pytest.raises(ValueError, match="BGR image"):
        letterbox(np.zeros((10, 10), dtype=np.uint8), (64, 64))
    with pytest.raises(ValueError, match="resampling"):
        WholeImageInput(resampling="stretch")


def test_kapao_fuses_in_image_pixels():
    """val.py maps detections to the image (scale_coords) before it fuses them: ``overwrite_tol`` is in image
    pixels. At gain 2 with no padding, decoding in input pixels with twice the tolerance and mapping the result
    back must give the same people (a tolerance of 10 image pixels: 20 input pixels fuse twice as many)."""
    torch.manual_seed(0)
    h, w = 256, 192
    maps = tuple(2.0 * torch.randn((1, 3, h // s, w // s, 57)) for s in (8, 16, 32, 64))
    model = mamkpd.create_model("kapao_s", input_size=(h, w)).eval()
    dense = model.dense(maps)
    placement = Placement(2.0, (0.0, 0.0), (h // 2, w // 2), (h, w))
    (in_image,) = model.decode_dense(dense, (h, w), KAPAODecoding(overwrite_tol=10), [placement])
    (in_input,) = model.decode_dense(dense, (h, w), KAPAODecoding(overwrite_tol=20))
    assert (in_input["keypoint_scores"] > 0).sum() > 100  # keypoint objects were fused
    np.testing.assert_allclose(in_image["keypoints"].numpy(), in_input["keypoints"].numpy() / 2, atol=1e-4)
    np.testing.assert_array_equal(in_image["keypoint_scores"].numpy(), in_input["keypoint_scores"].numpy())
    np.testing.assert_array_equal(in_image["scores"].numpy(), in_input["scores"].numpy())
    (narrow,) = model.decode_dense(dense, (h, w), KAPAODecoding(overwrite_tol=10))
    assert (narrow["keypoint_scores"] > 0).sum() < (in_input["keypoint_scores"] > 0).sum()


def evaluate_cli(model: str, confident, input_size: int, tmp_path: Path, *extra: str) -> dict:
    """`mamkpd evaluate` of a freshly initialised ``model`` saved as a plain state_dict (a model-zoo file)."""
    torch.manual_seed(0)
    net = mamkpd.create_model(model, input_size=(input_size, input_size))
    with torch.no_grad():  # an untrained head finds no one: its scores lifted over the thresholds
        confident(net)
    checkpoint = tmp_path / f"{model}.pth"
    torch.save(net.state_dict(), checkpoint)
    ann = sample("coco", "test_coco.json")
    args = ["evaluate", "--checkpoint", str(checkpoint), "--model", model, "--dataset", "coco", "--ann-file", str(ann)]
    args += ["--input-size", str(input_size), str(input_size), "--device", "cpu", "--json", *extra]
    proc = mamkpd_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert all(0.0 <= v <= 1.0 for v in report["metrics"].values()) and "AP" in report["metrics"]
    written = json.loads(Path(tmp_path, report["results_file"]).read_text())
    assert len(written) == report["num_instances"]
    assert all(r["image_id"] in SAMPLE_IDS and len(r["keypoints"]) == 51 for r in written)
    return report


def kapao_confident(model) -> None:
    for conv in model.model[-1].m:  # objectness and the pose object's class at 0.95 in every cell
        conv.bias.view(3, -1)[:, 4:6] = 3.0


def rtmo_confident(model) -> None:
    for conv in model.head.head_module.out_cls:  # 0.5 in every cell, over the 0.1 threshold
        conv.bias.fill_(0.0)


@requires_samples
def test_evaluate_cli_kapao(tmp_path):
    report = evaluate_cli("kapao_s", kapao_confident, 128, tmp_path, "--no-flip")
    protocol = report["protocol"]
    assert protocol["letterbox"] == "resize_pad" and protocol["rect_stride"] == 64 and protocol["flip_test"] is False
    assert protocol["input_channels"] == "RGB, divided by 255" and protocol["input_size"] == [128, 128]
    assert report["num_instances"] > 0
    # image pixels: the samples are 640 wide, the input 128
    xs = np.array([r["keypoints"][0::3] for r in json.loads(Path(tmp_path, report["results_file"]).read_text())])
    assert xs.max() > 200


@requires_samples
def test_evaluate_cli_rtmo_and_a_model_without_augmentation(tmp_path):
    report = evaluate_cli("rtmo_s", rtmo_confident, 256, tmp_path)  # flip test asked, RTMO has none: evaluated without
    protocol = report["protocol"]
    assert protocol["letterbox"] == "affine" and protocol["flip_test"] is False and protocol["rect_stride"] is None
    assert protocol["input_channels"] == "BGR, divided by 1" and protocol["model"] == "rtmo_s"


def grouppose_confident(model) -> None:
    model.class_embed[-1].bias.copy_(torch.tensor([-5.0, 5.0]))  # the person class first for every query


@requires_samples
def test_evaluate_cli_grouppose(tmp_path):
    """The DETR resize (short side to 128 unless the long side passes 128: the 640-wide samples become 128 wide,
    no padding) and ImageNet normalisation; the 50 best (pose, class) pairs, all of the person class here."""
    report = evaluate_cli("grouppose_r50", grouppose_confident, 128, tmp_path)
    protocol = report["protocol"]
    assert protocol["letterbox"] == "resize_short" and protocol["flip_test"] is False
    assert protocol["input_channels"].startswith("RGB, divided by 255, normalised by mean [0.485, 0.456, 0.406]")
    assert report["num_instances"] == 50 * len(SAMPLE_IDS)
    xs = np.array([r["keypoints"][0::3] for r in json.loads(Path(tmp_path, report["results_file"]).read_text())])
    assert 200 < xs.max() <= 640  # image pixels


@requires_samples
def test_test_time_augmentation_only_where_the_model_has_one():
    ann = sample("coco", "test_coco.json")
    kapao = mamkpd.create_model("kapao_s", input_size=(128, 128)).eval()
    with torch.no_grad():
        kapao_confident(kapao)
    results = whole_image_coco_results(kapao, ann, ann.parent, augment=True, limit=1)
    assert results and {r["image_id"] for r in results} == {785}
    rtmo = mamkpd.create_model("rtmo_s", input_size=(64, 64)).eval()
    with pytest.raises(ValueError, match="no test-time augmentation"):
        whole_image_coco_results(rtmo, ann, ann.parent, augment=True, limit=1)
