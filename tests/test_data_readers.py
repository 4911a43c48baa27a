"""Readers on the real samples and on tiny hand-made data: layouts, conventions, bad input."""

import json

import cv2
import numpy as np
import pytest
import torch
from pose_samples import SAMPLES, requires_samples

from mamkpd.codecs import build_codec
from mamkpd.data import DATASETS, build_dataset, collate


def _coco(split="train", **kw):
    return build_dataset("coco", split, train=split == "train", ann_file=str(SAMPLES / "coco" / "test_coco.json"), **kw)


@requires_samples
def test_coco_sample_gt_instances_and_items():
    ds = _coco(seed=0)
    assert len(ds) == 12 and ds.skipped == 0  # 14 people, 2 without any labelled joint
    assert ds.info is DATASETS["coco"] and ds.ann_file.endswith("test_coco.json")
    item = ds[3]
    assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.float32
    assert item["target"].shape == (17, 64, 48) and item["target_weight"].shape == (17,)
    meta = item["meta"]
    assert meta["instance_index"] == 3 and meta["image_id"] in {785, 40083, 196141, 197388}
    assert meta["keypoints"].shape == (17, 3) and meta["box_score"] == 1.0
    assert meta["scale"][0] / meta["scale"][1] == pytest.approx(0.75, rel=1e-5)
    batch = collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 256, 192) and len(batch["meta"]) == 3


@requires_samples
def test_coco_val_uses_hrnet_box_convention():
    ds = _coco("val")
    rec = next(r for r in ds.records if r.image_id == 785)
    x, y, w, h = 280.79, 44.73, 218.7, 346.68  # clipped like HRNet: w - 1, h - 1
    np.testing.assert_allclose(rec.center, [x + (w - 1) / 2, y + (h - 1) / 2], atol=1e-3)
    np.testing.assert_allclose(rec.scale, [(h - 1) * 0.75 * 1.25, (h - 1) * 1.25], rtol=1e-5)
    item = ds[0]
    assert item["meta"]["rotation"] == 0.0 and not item["meta"]["flipped"]
    assert torch.equal(ds[0]["image"], item["image"])  # evaluation items carry no randomness


@requires_samples
def test_coco_detector_boxes():
    ds = _coco("val", box_file=str(SAMPLES / "coco" / "test_coco_det_AP_H_56.json"))
    assert len(ds) == 118  # all person boxes: HRNet keeps score >= 0.0
    scores = [r.box_score for r in ds.records]
    assert min(scores) < 0.01 and max(scores) <= 1.0
    assert float(ds[0]["target_weight"].sum()) == 0.0  # no ground truth for detections


@requires_samples
def test_mpii_sample_follows_hrnet_center_scale_convention():
    ds = build_dataset("mpii", "train", train=False, ann_file=str(SAMPLES / "mpii" / "test_mpii.json"))
    assert len(ds) == 5 and ds.info.input_size == (256, 256)
    raw = json.loads((SAMPLES / "mpii" / "test_mpii.json").read_text())
    k = next(i for i, a in enumerate(raw) if a["image"] == "005808361.jpg")
    rec = ds.records[k]
    s = raw[k]["scale"]
    np.testing.assert_allclose(rec.center, [966.0 - 1, 340.0 + 15 * s - 1], rtol=1e-6)
    np.testing.assert_allclose(rec.scale, [s * 1.25 * 200] * 2, rtol=1e-6)
    np.testing.assert_allclose(rec.keypoints[:, :2], np.asarray(raw[k]["joints"]) - 1, atol=1e-4)
    assert ds[k]["target"].shape == (16, 64, 64)


@requires_samples
def test_ap10k_sample_keeps_species_category():
    ds = build_dataset("ap10k", "train", train=True, seed=0, ann_file=str(SAMPLES / "ap10k" / "test_ap10k.json"))
    assert len(ds) == 2
    assert sorted(ds[i]["meta"]["category_id"] for i in range(2)) == [1, 26]
    assert ds[0]["target"].shape == (17, 64, 64)


@requires_samples
def test_augmentation_is_reproducible_per_seed_epoch_and_index():
    a, b = _coco(seed=7), _coco(seed=7)
    for i in (0, 5):
        assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["meta"]["rotation"] == b[i]["meta"]["rotation"]
    metas = []
    for epoch in range(6):
        a.set_epoch(epoch)
        m = a[0]["meta"]
        metas.append((m["rotation"], float(m["scale"][0]), m["flipped"]))
    assert len(set(metas)) == 6


def _write_synthetic_coco(tmp_path, annotations, n_images=1, corrupt=()):
    """Tiny COCO-format set: black 200x160 images with white 3x3 dots at the keypoints."""
    images = []
    for i in range(1, n_images + 1):
        img = np.zeros((160, 200, 3), np.uint8)
        for ann in annotations:
            if ann["image_id"] == i and isinstance(ann["keypoints"], list) and len(ann["keypoints"]) == 51:
                for x, y, v in np.reshape(ann["keypoints"], (17, 3)).astype(int):
                    if v:
                        img[y - 1 : y + 2, x - 1 : x + 2] = 255
        path = tmp_path / f"{i:012d}.jpg"
        if i in corrupt:
            path.write_bytes(b"this is not a jpeg")
        else:
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
        images.append({"id": i, "file_name": path.name, "width": 200, "height": 160})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(DATASETS["coco"].keypoint_names)}],
    }
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


def _person(image_id, ann_id, kps=None, bbox=(40, 20, 110, 125)):
    if kps is None:
        rng = np.random.default_rng(ann_id)
        xy = rng.uniform([50, 30], [140, 135], size=(17, 2)).round()
        kps = np.concatenate([xy, np.full((17, 1), 2)], 1).ravel().tolist()
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": list(bbox),
        "area": 1000.0,
        "num_keypoints": 17,
        "keypoints": kps,
    }


def test_crop_and_target_agree_under_augmentation(tmp_path):
    """The heatmap target peaks where the joint's dot lands in the augmented crop."""
    ann_file = _write_synthetic_coco(tmp_path, [_person(1, 1)])
    ds = build_dataset(
        "coco", "train", train=True, seed=0, ann_file=str(ann_file), codec=build_codec("msra", (256, 192))
    )
    checked = 0
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[0]
        img = item["image"].numpy().mean(0)
        target, weight = item["target"].numpy(), item["target_weight"].numpy()
        for k in np.nonzero(weight)[0]:
            y, x = np.unravel_index(target[k].argmax(), target[k].shape)
            if not (2 <= x < 46 and 2 <= y < 62):
                continue
            window = img[4 * y - 4 : 4 * y + 6, 4 * x - 4 : 4 * x + 6]
            assert window.max() > 1.0, (epoch, k, item["meta"]["flipped"])  # a white dot is there
            checked += 1
    assert checked > 40


def test_bad_records_are_counted_or_raised_with_image_id(tmp_path):
    anns = [
        _person(1, 1),
        _person(1, 2, kps=[1, 2, 2] * 16),
        _person(2, 3, bbox=(10, 10, 0, 50)),
        _person(3, 4),
        _person(2, 5),
    ]
    ann_file = _write_synthetic_coco(tmp_path, anns, n_images=3, corrupt=(3,))
    ds = build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="skip")
    assert len(ds) == 2 and ds.skipped == 3
    with pytest.raises(ValueError, match=r"image id 1: annotation 2: keypoints has 48 values, expected 51"):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="error")
    anns[1] = _person(1, 2)
    ann_file = _write_synthetic_coco(tmp_path, anns, n_images=3, corrupt=(3,))
    with pytest.raises(ValueError, match=r"image id 2: annotation 3: zero-size bbox"):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="error")
    anns[2] = _person(2, 3)
    ann_file = _write_synthetic_coco(tmp_path, anns, n_images=3, corrupt=(3,))
    with pytest.raises(ValueError, match=r"image id 3: image unreadable \(not an image .*\): .*000000000003.jpg"):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="error")


def test_missing_and_malformed_data_name_the_file_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMKPD_COCO_ROOT", raising=False)
    with pytest.raises(ValueError, match="MAMKPD_COCO_ROOT.*cocodataset.org"):
        build_dataset("coco", "train", train=True)
    with pytest.raises(FileNotFoundError, match=r"person_keypoints_val2017.json.*cocodataset"):
        build_dataset("coco", "val", str(tmp_path), train=False)
    monkeypatch.setenv("MAMKPD_AP10K_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ap10k-test-split1.json.*AP-10K"):
        build_dataset("ap10k", "test", train=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json: malformed annotation file"):
        build_dataset("coco", "val", train=False, ann_file=str(bad), image_dir=str(tmp_path))
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=r"bad.json: malformed coco annotation file: no 'images' list"):
        build_dataset("coco", "val", train=False, ann_file=str(bad), image_dir=str(tmp_path))
    with pytest.raises(KeyError, match="unknown dataset"):
        build_dataset("crowdpose", "val", train=False)


@requires_samples
def test_standard_layout_under_a_data_root(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").symlink_to(SAMPLES / "coco", target_is_directory=True)
    (tmp_path / "annotations" / "person_keypoints_val2017.json").symlink_to(SAMPLES / "coco" / "test_coco.json")
    ds = build_dataset("coco", "val", str(tmp_path), train=False)
    assert len(ds) == 12 and ds.image_dir == str(tmp_path / "val2017")
