"""RTMO: decode on a synthetic dense output (boxes, score threshold, NMS, DCC inside the box), the
letterbox geometry, and the whole-image path on real COCO samples."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import pytest
import torch
from pose_samples import SAMPLES, requires_samples

import mamkpd
from baselines.rtmo import box_iou, nms
from mamkpd.codecs.letterbox import letterbox
from mamkpd.engine.whole_image import whole_image_coco_results

COCO_SAMPLES = SAMPLES / "coco"
CELLS16 = 40 * 40  # stride-16 cells of a 640x640 input; stride-32 cells follow


@functools.cache
def rtmo_s() -> torch.nn.Module:
    torch.manual_seed(0)
    return mamkpd.create_model("rtmo_s").eval()


def synthetic_outputs(model) -> tuple[torch.Tensor, ...]:
    cells = CELLS16 + 20 * 20
    cls = torch.full((1, cells, 1), -10.0)
    bbox = torch.zeros(1, cells, 4)
    vis = torch.zeros(1, cells, 17)
    pose = torch.randn(1, cells, 256)
    a, b, c, d, e = 10 * 40 + 20, 10 * 40 + 21, CELLS16 + 3 * 20 + 4, 30 * 40 + 5, 35 * 40 + 35
    cls[0, [a, b, c, d, e], 0] = torch.tensor([5.0, 3.0, 2.0, -1.5, -3.0])  # e is under the 0.1 threshold
    # priors at x * stride + (stride - 1) / 2 (MlvlPointGenerator(centralize_points=True)): a's cell (20, 10)
    # at stride 16 -> (327.5, 167.5); a: centre (335.5, 163.5), size 64 x 128 -> box (303.5, 99.5, 367.5, 227.5);
    # b predicts almost the same box
    bbox[0, a] = torch.tensor([0.5, -0.25, math.log(4), math.log(8)])
    bbox[0, b] = torch.tensor([-0.5, -0.25, math.log(4), math.log(8)])
    bbox[0, c] = torch.tensor([0.0, 0.0, math.log(2), math.log(3)])  # stride 32: (143.5, 111.5), 64 x 96
    vis[0, a] = 2.0
    return cls, bbox, vis, pose


def test_decode_synthetic_output():
    model = rtmo_s()
    people = model.decode(synthetic_outputs(model))[0]
    scores = people["scores"]
    assert len(scores) == 3  # b suppressed by NMS (same box as a), e under the threshold
    assert torch.allclose(scores, torch.sigmoid(torch.tensor([5.0, 2.0, -1.5])))
    assert torch.allclose(people["bboxes"][0], torch.tensor([303.5, 99.5, 367.5, 227.5]))
    assert torch.allclose(people["bboxes"][1], torch.tensor([111.5, 63.5, 175.5, 159.5]))
    assert torch.allclose(people["keypoint_scores"][0], torch.sigmoid(torch.tensor(2.0)).expand(17))
    kpts = people["keypoints"]
    assert kpts.shape == (3, 17, 2)
    # DCC keypoints are expectations over bins spread across the box padded by 1.25
    lo = torch.tensor([335.5 - 0.625 * 64, 163.5 - 0.625 * 128])
    hi = torch.tensor([335.5 + 0.625 * 64, 163.5 + 0.625 * 128])
    assert ((kpts[0] >= lo - 1e-3) & (kpts[0] <= hi + 1e-3)).all()


def test_decode_thresholds_are_arguments_and_sizes_are_checked():
    model = rtmo_s()
    outputs = synthetic_outputs(model)
    assert len(model.decode(outputs, score_thr=0.9)[0]["scores"]) == 1
    assert len(model.decode(outputs, nms_thr=1.0)[0]["scores"]) == 4  # nothing suppressed
    with pytest.raises(ValueError, match="grid cells"):
        model.decode(tuple(o[:, :100] for o in outputs))


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.1])
    assert nms(boxes, scores, 0.65).tolist() == [1, 2]
    assert box_iou(boxes[:1], boxes[2:3]).item() == 0.0


def test_letterbox_centres_the_image_and_maps_back():
    image = np.full((300, 480, 3), 7, dtype=np.uint8)
    x, box = letterbox(image, (640, 640), rtmo_s().whole_image_input)
    assert x.shape == (3, 640, 640) and x.dtype == torch.float32
    # 480x300 fits as 640x400, centred: 120 rows of padding (114) above and below, raw values kept
    assert x[:, 0].eq(114).all() and x[:, -1].eq(114).all() and x[:, 320, 320].eq(7).all()
    assert x[:, 125, 5].eq(7).all() and x[:, 115, 5].eq(114).all()
    points = np.array([[0.0, 0.0], [479.0, 299.0], [240.0, 150.0]], dtype=np.float32)
    assert np.allclose(box.to_image(box.to_input(points)), points, atol=1e-4)
    assert np.allclose(box.to_input(points[2:]), [[320.0, 320.0]])
    with pytest.raises(ValueError, match="BGR image"):
        letterbox(np.zeros((10, 10), dtype=np.uint8), (640, 640))


@requires_samples
def test_whole_image_path_gives_coco_results_on_real_images():
    from mamkpd.evaluation import coco_keypoint_ap

    model = rtmo_s()
    with torch.no_grad():  # an untrained head scores ~1%: lift it over the threshold for the format check
        for conv in model.head.head_module.out_cls:
            conv.bias.fill_(0.0)
    ann = COCO_SAMPLES / "test_coco.json"
    results = whole_image_coco_results(model, ann, COCO_SAMPLES, limit=1)
    assert results and all(len(r["keypoints"]) == 51 and 0 < r["score"] < 1 for r in results)
    image = cv2.imread(str(COCO_SAMPLES / "000000000785.jpg"))
    xs = np.array([r["keypoints"][0::3] for r in results])
    assert xs.min() > -0.5 * image.shape[1] and xs.max() < 1.5 * image.shape[1]  # in image pixels
    metrics = coco_keypoint_ap(str(ann), results)  # random weights: the point is that it evaluates
    assert 0.0 <= metrics["AP"] <= 1.0
    with pytest.raises(FileNotFoundError, match="annotation file"):
        whole_image_coco_results(model, COCO_SAMPLES / "nope.json", COCO_SAMPLES)
