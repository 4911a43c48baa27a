"""SimCC codec against MMPose 1.3.2's SimCCLabel and flip_vectors (tests/fixtures/simcc_codec.npz), and the
whole evaluation path of a SimCC model on the COCO samples, scored by an oracle that returns the true labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from pose_samples import sample

from mamkpd.codecs import SimCCLabel, build_codec
from mamkpd.codecs.flip import flip_order
from mamkpd.data import build_dataset
from mamkpd.engine import evaluate

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "simcc_codec.npz")


def test_labels_and_weights_equal_mmpose():
    codec = build_codec("simcc", (256, 192))
    assert isinstance(codec, SimCCLabel) and codec.bins == (384, 512)
    target, weights = codec.encode(FIXTURE["keypoints"][0], FIXTURE["visible"][0] > 0)
    x_labels, y_labels = codec.split_target(target)
    assert np.allclose(x_labels, FIXTURE["x_labels"][0], atol=1e-6)
    assert np.allclose(y_labels, FIXTURE["y_labels"][0], atol=1e-6)
    assert np.array_equal(weights, FIXTURE["label_weights"][0])
    # half-bin ties round to even as NumPy does: 10.25 px -> bin 20.5 -> 20, 20.75 px -> 41.5 -> 42
    assert x_labels[1].argmax() == 20 and y_labels[1].argmax() == 42


def test_decode_equals_mmpose():
    codec = build_codec("simcc", (256, 192))
    keypoints, scores = codec.decode((FIXTURE["simcc_x"], FIXTURE["simcc_y"]))
    assert np.array_equal(keypoints, FIXTURE["decoded_keypoints"])
    assert np.array_equal(scores, FIXTURE["decoded_scores"])
    assert np.array_equal(keypoints[0, 0], [-0.5, -0.5])  # no positive maximum: -1 bin / split ratio
    assert keypoints[0, 2, 0] == 5.0  # a tie between bins 10 and 200: the first wins


def test_flip_back_equals_flip_vectors():
    codec = build_codec("simcc", (256, 192))
    pairs = [(i, j) for i, j in enumerate(FIXTURE["flip_indices"].tolist()) if i < j]
    x, y = codec.flip_back((torch.from_numpy(FIXTURE["simcc_x"]), torch.from_numpy(FIXTURE["simcc_y"])), pairs)
    assert torch.equal(x, torch.from_numpy(FIXTURE["flipped_x"]))
    assert torch.equal(y, torch.from_numpy(FIXTURE["flipped_y"]))
    assert codec.flip_shift is False and codec.use_udp is False and codec.name == "simcc"


def test_flip_order_swaps_pairs_only():
    assert flip_order(5, [(1, 2), (3, 4)]) == [0, 2, 1, 4, 3]


def test_wrong_outputs_are_a_clear_error():
    codec = build_codec("simcc", (256, 192))
    with pytest.raises(ValueError, match=r"simcc_x \(N, K, Wx\)"):
        codec.decode((np.zeros((17, 384)), np.zeros((17, 512))))
    with pytest.raises(ValueError, match=r"gives one output of shape \(2, 17, 64, 48\) \(a heatmap model"):
        codec.flip_back(torch.zeros(2, 17, 64, 48), [(1, 2)])


class SimCCOracle(nn.Module):
    """Returns each known crop's true SimCC labels (and their mirror for the mirrored crop)."""

    def __init__(self, dataset) -> None:
        super().__init__()
        codec, self.known = dataset.codec, {}
        order = flip_order(dataset.info.num_keypoints, dataset.info.flip_pairs)
        for i in range(len(dataset)):
            item = dataset[i]
            x, y = codec.split_target(item["target"])
            self.known[item["image"].numpy().tobytes()] = (x, y)
            self.known[item["image"].flip(-1).numpy().tobytes()] = (x.flip(-1)[order], y[order])

    def forward(self, images):
        pairs = [self.known[img.numpy().tobytes()] for img in images]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@pytest.mark.parametrize("flip_test", [False, True])
def test_simcc_labels_score_full_coco_ap(tmp_path, flip_test):
    ann = sample("coco", "test_coco.json")
    codec = build_codec("simcc", (256, 192))
    ds = build_dataset(
        "coco", "val", train=False, input_size=(256, 192), codec=codec, ann_file=str(ann), image_dir=str(ann.parent)
    )
    report = evaluate(SimCCOracle(ds), ds, codec, flip_test=flip_test, batch_size=4, workers=0, progress=False)
    assert report["metrics"]["AP"] > 0.95, report["metrics"]
    assert report["protocol"]["codec"] == "simcc" and report["protocol"]["flip_shift"] is False
