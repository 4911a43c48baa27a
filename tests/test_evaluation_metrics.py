"""Evaluation: OKS / OKS-NMS, rescoring and MPII PCKh on hand-worked cases; COCO / AP-10K AP on the samples."""

import json

import numpy as np
import pytest
from pose_samples import SAMPLES, requires_samples
from scipy.io import savemat

from mamkpd.data.infos import COCO_SIGMAS
from mamkpd.evaluation import ap10k_ap, coco_keypoint_ap, mpii_pckh, oks_matrix, oks_nms, rescore
from mamkpd.evaluation.mpii import HRNET_MEAN01_NAME, MPII_MAT_JOINTS


def _pose(x0=100.0, y0=100.0, score=1.0):
    kp = np.zeros((17, 3))
    kp[:, 0] = x0 + np.arange(17) * 3
    kp[:, 1] = y0 + np.arange(17) * 5
    kp[:, 2] = score
    return kp


def test_oks_hand_value():
    a = _pose()
    b = a.copy()
    b[0, 0] += 1.0  # nose moved by 1 px; areas 100: e = 1 / (2 * 0.026)^2 / 100 / 2 = 1.84911
    oks = oks_matrix(np.stack([a, b]), np.array([100.0, 100.0]), COCO_SIGMAS)
    assert oks[0, 0] == pytest.approx(1.0)
    assert oks[0, 1] == pytest.approx((16 + np.exp(-1.849112)) / 17, rel=1e-5)  # 0.950430
    assert oks[0, 1] == pytest.approx(0.950430, abs=1e-5)
    np.testing.assert_allclose(oks, oks.T)


def test_oks_nms_keeps_best_and_distinct_poses_per_image():
    near = _pose()
    near[0, 0] += 1.0
    res = [
        {"image_id": 1, "keypoints": near.ravel().tolist(), "score": 0.8, "area": 100.0},  # OKS 0.95 with the next
        {"image_id": 1, "keypoints": _pose().ravel().tolist(), "score": 0.9, "area": 100.0},
        {"image_id": 1, "keypoints": _pose(300, 300).ravel().tolist(), "score": 0.7, "area": 100.0},
        {"image_id": 2, "keypoints": _pose().ravel().tolist(), "score": 0.1, "area": 100.0},  # other image
    ]
    kept = oks_nms(res, thr=0.9)
    assert [r["score"] for r in kept] == [0.9, 0.7, 0.1]
    assert len(oks_nms(res, thr=0.96)) == 4  # OKS 0.9504 <= 0.96 survives
    with pytest.raises(ValueError, match="no 'area'"):
        oks_nms([{"image_id": 1, "keypoints": [0] * 51, "score": 1.0}])


def test_rescore_is_box_score_times_mean_confident_keypoint_score():
    kp = np.zeros((17, 3))
    kp[:3, 2] = [0.5, 0.9, 0.2]  # 0.2 is not above the threshold
    out = rescore(
        [
            {"image_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.8},
            {"image_id": 1, "keypoints": [0.0] * 51, "score": 0.8},
        ],
        thr=0.2,
    )
    assert out[0]["score"] == pytest.approx(0.8 * 0.7)
    assert out[1]["score"] == 0.0


def _mpii_case():
    """Two people, every ground-truth joint at one point; see the test for the hand-worked table."""
    gt1 = np.zeros((2, 16, 2))  # 1-based, as in the .mat
    gt1[0], gt1[1] = 100.0, 200.0
    missing = np.zeros((2, 16), bool)
    missing[1, [15, 0]] = True  # person 1: lwri and rank not annotated
    boxes = np.array([[[0, 0], [30, 40]], [[0, 0], [60, 80]]], float)  # head sizes 0.6 x 50, 0.6 x 100
    offsets = np.zeros((2, 16, 2))
    offsets[0, 9] = [15, 0]  # head: 15 / 30 = 0.5 -> correct (<=)
    offsets[0, 13] = [9, 12]  # lsho: 15 -> correct
    offsets[0, 12] = [15.3, 0]  # rsho: 0.51 -> wrong
    offsets[0, 15] = [100, 0]  # lwri: wrong
    offsets[0, 6] = [100, 0]  # pelvis: wrong, but not in the Mean
    offsets[1, 12] = [30, 0]  # rsho: 30 / 60 -> correct
    offsets[1, 9] = [31, 0]  # head: wrong
    offsets[1, 15] = [500, 0]  # lwri: missing, ignored
    pred0 = gt1 - 1 + offsets  # 0-based predictions
    return gt1, missing, boxes, pred0


def _write_gt_mat(path, gt1, missing, boxes):
    savemat(
        path,
        {
            "dataset_joints": np.array([list(MPII_MAT_JOINTS)], dtype=object),
            "jnt_missing": missing.T.astype(np.uint8),
            "pos_gt_src": gt1.transpose(1, 2, 0),
            "headboxes_src": boxes.transpose(1, 2, 0),
        },
    )


def test_pckh_hand_worked_table_from_mat_and_from_arrays(tmp_path):
    gt1, missing, boxes, pred0 = _mpii_case()
    expected = {
        "Head": 50.0,
        "Shoulder": 75.0,
        "Elbow": 100.0,
        "Wrist": 50.0,
        "Hip": 100.0,
        "Knee": 100.0,
        "Ankle": 100.0,
        "Mean": 100 * 23 / 26,
        "Mean@0.1": 100 * 20 / 26,
        HRNET_MEAN01_NAME: 100 * 20 / 26,  # no error lies between 0.1 and 0.11 here
    }
    mat = tmp_path / "mpii_gt_val.mat"
    _write_gt_mat(mat, gt1, missing, boxes)
    from_mat = mpii_pckh(pred0, str(mat))
    assert from_mat == pytest.approx(expected)
    head_sizes = 0.6 * np.array([50.0, 100.0])
    assert mpii_pckh(pred0, (gt1 - 1, ~missing, head_sizes)) == pytest.approx(expected)


def test_pckh_bad_input(tmp_path):
    gt1, missing, boxes, pred0 = _mpii_case()
    mat = tmp_path / "gt.mat"
    _write_gt_mat(mat, gt1, missing, boxes)
    with pytest.raises(ValueError, match="3 predicted people but the ground truth has 2"):
        mpii_pckh(np.zeros((3, 16, 2)), str(mat))
    savemat(tmp_path / "partial.mat", {"jnt_missing": missing.T})
    with pytest.raises(ValueError, match="missing field.*dataset_joints"):
        mpii_pckh(pred0, str(tmp_path / "partial.mat"))
    with pytest.raises(FileNotFoundError, match="mpii_gt_val.mat"):
        mpii_pckh(pred0, str(tmp_path / "absent.mat"))


def _gt_as_results(ann_file, keep_category=False, noise=0.0, seed=0):
    gt = json.loads(ann_file.read_text())
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or a.get("num_keypoints", 0) == 0:
            continue
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, noise, size=(len(kp), 2))
        kp[:, 2] = 1.0
        out.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"] if keep_category else 1,
                "keypoints": kp.ravel().tolist(),
                "score": float(rng.uniform(0.5, 1.0)),
            }
        )
    return out


@requires_samples
def test_coco_ap_of_ground_truth_is_one_and_evaluators_agree():
    ann = SAMPLES / "coco" / "test_coco.json"
    perfect = _gt_as_results(ann)
    for ev in ("pycocotools", "xtcocotools"):
        stats = coco_keypoint_ap(str(ann), perfect, evaluator=ev)
        assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    noisy = _gt_as_results(ann, noise=6.0)
    py = coco_keypoint_ap(str(ann), noisy)
    xt = coco_keypoint_ap(str(ann), noisy, evaluator="xtcocotools")
    assert 0.0 < py["AP"] < 1.0
    assert py == pytest.approx(xt, abs=1e-12)


@requires_samples
def test_ap10k_ap_per_species_with_its_sigmas():
    ann = SAMPLES / "ap10k" / "test_ap10k.json"
    perfect = _gt_as_results(ann, keep_category=True)
    assert ap10k_ap(str(ann), perfect)["AP"] == pytest.approx(1.0)
    # species matter: the right poses under the wrong (but existing) species match nothing
    swapped = [{**r, "category_id": 1 if r["category_id"] == 26 else 26} for r in perfect]
    assert ap10k_ap(str(ann), swapped)["AP"] == pytest.approx(0.0)
    noisy = _gt_as_results(ann, keep_category=True, noise=25.0)
    xt, py = ap10k_ap(str(ann), noisy), ap10k_ap(str(ann), noisy, evaluator="pycocotools")
    assert 0.0 < xt["AP"] < 1.0 and xt == pytest.approx(py, abs=1e-12)
    # the sigmas themselves are checked against MMPose's in test_reference_fixtures.py


@requires_samples
def test_bad_results_are_errors_not_zero_scores():
    ann = str(SAMPLES / "coco" / "test_coco.json")
    good = _gt_as_results(SAMPLES / "coco" / "test_coco.json")
    cases = [
        ([], "empty"),
        ({"a": 1}, "expected a JSON list"),
        ([{**good[0], "image_id": 123}], "image_id 123 is not an image"),
        ([{**good[0], "keypoints": [1.0] * 50}], "has 50 values, expected 51"),
        ([{k: v for k, v in good[0].items() if k != "score"}], "missing 'score'"),
        ([{**good[0], "category_id": 7}], "category_id 7"),
    ]
    for results, msg in cases:
        with pytest.raises(ValueError, match=msg):
            coco_keypoint_ap(ann, results)
    with pytest.raises(ValueError, match="only available with evaluator='xtcocotools'"):
        coco_keypoint_ap(ann, good, use_area=False, evaluator="pycocotools")
    assert coco_keypoint_ap(ann, good, use_area=False)["AP"] > 0.5  # xtcocotools' box-area OKS
