"""Inference: flip test, and the whole results chain scored by an oracle that returns the true heatmaps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from pose_samples import sample

from mamkpd.codecs import build_codec
from mamkpd.data import build_dataset
from mamkpd.engine import evaluate, flip_back


def test_flip_back_undoes_the_flip_and_swaps_pairs():
    heatmaps = torch.rand(2, 5, 8, 6)
    pairs = [(1, 2), (3, 4)]
    flipped = heatmaps.flip(-1)[:, [0, 2, 1, 4, 3]]  # what a perfect model sees on the mirrored crop
    assert torch.equal(flip_back(flipped, pairs, shift=False), heatmaps)
    shifted = flip_back(flipped, pairs, shift=True)
    assert torch.equal(shifted[..., 1:], heatmaps[..., :-1])  # HRNet: one pixel to the right
    assert torch.equal(shifted[..., 0], heatmaps[..., 0])


class Oracle(nn.Module):
    """Returns each known crop's target heatmaps (and their mirror for the mirrored crop)."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.known = {}
        order = list(range(dataset.info.num_keypoints))
        for i, j in dataset.info.flip_pairs:
            order[i], order[j] = j, i
        for i in range(len(dataset)):
            item = dataset[i]
            self.known[item["image"].numpy().tobytes()] = item["target"]
            self.known[item["image"].flip(-1).numpy().tobytes()] = item["target"].flip(-1)[order]

    def forward(self, images):
        return torch.stack([self.known[img.numpy().tobytes()] for img in images])


def _samples(name, ann, codec_name="msra"):
    ann_file = sample(name, ann)
    input_size = (256, 192) if name == "coco" else (256, 256)
    codec = build_codec(codec_name, input_size)
    ds = build_dataset(
        name,
        "val",
        None,
        train=False,
        input_size=input_size,
        codec=codec,
        ann_file=str(ann_file),
        image_dir=str(ann_file.parent),
    )
    return ds, codec


@pytest.mark.parametrize("flip_test", [False, True])
def test_oracle_heatmaps_score_full_coco_ap(tmp_path, flip_test):
    ds, codec = _samples("coco", "test_coco.json")
    out = tmp_path / "results.json"
    report = evaluate(
        Oracle(ds),
        ds,
        codec,
        flip_test=flip_test,
        batch_size=4,
        workers=0,
        results_file=out,
        progress=False,
    )
    assert report["metrics"]["AP"] > 0.95, report["metrics"]
    assert report["protocol"]["flip_test"] is flip_test and report["protocol"]["box_source"] == "ground truth"
    assert report["protocol"]["oks_nms_thr"] == 0.9 and report["protocol"]["rescore_thr"] == 0.2
    results = json.loads(out.read_text())
    assert results and all(set(r) == {"image_id", "category_id", "keypoints", "score"} for r in results)
    assert all(len(r["keypoints"]) == 17 * 3 and r["category_id"] == 1 for r in results)
    # rounded only in the file (3 decimals); rescoring and OKS-NMS saw full precision
    assert all(v == round(v, 3) for r in results for v in r["keypoints"])


def test_udp_codec_sets_the_flip_convention_of_the_protocol():
    """ViTPose's UDP: the flip test does not shift, and the oracle still scores full AP through UDP's crops."""
    ds, codec = _samples("coco", "test_coco.json", codec_name="udp")
    report = evaluate(Oracle(ds), ds, codec, flip_test=True, batch_size=4, workers=0, progress=False)
    assert report["protocol"]["codec"] == "udp" and report["protocol"]["flip_shift"] is False
    assert report["metrics"]["AP"] > 0.95, report["metrics"]


def test_a_wrong_model_scores_near_zero():
    """The oracle test can fail: heatmaps of another instance give a low AP."""
    ds, codec = _samples("coco", "test_coco.json")
    oracle = Oracle(ds)
    rolled = {k: v.roll(1, dims=-1).roll(7, dims=-2) for k, v in oracle.known.items()}
    oracle.known = rolled
    report = evaluate(oracle, ds, codec, flip_test=False, workers=0, progress=False)
    assert report["metrics"]["AP"] < 0.5


def test_oracle_ap10k_keeps_species_category(tmp_path):
    ds, codec = _samples("ap10k", "test_ap10k.json")
    out = tmp_path / "ap10k.json"
    report = evaluate(Oracle(ds), ds, codec, flip_test=True, workers=0, results_file=out, progress=False)
    assert report["metrics"]["AP"] > 0.95
    gt = json.loads(sample("ap10k", "test_ap10k.json").read_text())
    gt_cats = {a["image_id"]: a["category_id"] for a in gt["annotations"]}
    assert all(r["category_id"] == gt_cats[r["image_id"]] for r in json.loads(out.read_text()))


def test_mpii_pckh_from_annotations_and_head_sizes(tmp_path):
    ds, codec = _samples("mpii", "test_mpii.json")
    with pytest.raises(ValueError, match="head size"):  # the samples ship no head boxes
        evaluate(Oracle(ds), ds, codec, workers=0, progress=False)
    for rec in ds.records:
        rec.head_size = 60.0  # as build_dataset sets them from mpii_gt_val.mat
    out = tmp_path / "mpii.json"
    report = evaluate(Oracle(ds), ds, codec, workers=0, results_file=out, progress=False)
    assert report["metrics"]["Mean"] > 99.0
    assert np.asarray(json.loads(out.read_text())).shape == (len(ds), 16, 2)


def test_images_follow_the_channel_order_the_weights_expect():
    """BGR (the original SimpleBaseline release): cv2's channel order, normalised with the RGB statistics;
    evaluate refuses a dataset whose order differs from the model's and records the order it used."""
    ann_file = sample("coco", "test_coco.json")
    kwargs = dict(train=False, ann_file=str(ann_file), image_dir=str(ann_file.parent))
    rgb = build_dataset("coco", "val", **kwargs)[0]["image"].numpy()
    bgr_ds = build_dataset("coco", "val", channel_order="bgr", **kwargs)
    bgr = bgr_ds[0]["image"].numpy()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    raw_rgb = rgb * std[:, None, None] + mean[:, None, None]
    expected = (raw_rgb[::-1] - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(bgr, expected, atol=1e-5)

    codec = build_codec("msra", (256, 192))
    oracle = Oracle(bgr_ds)
    with pytest.raises(ValueError, match="expects RGB images.*gives BGR"):
        evaluate(oracle, bgr_ds, codec, workers=0, progress=False)
    oracle.input_channels = "bgr"
    report = evaluate(oracle, bgr_ds, codec, workers=0, progress=False)
    assert report["metrics"]["AP"] > 0.95 and report["protocol"]["input_channels"].startswith("BGR")
