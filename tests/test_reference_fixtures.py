"""The suite against numbers the reference implementations produced on fixed inputs.

Each fixture in tests/fixtures/ names the repository, revision and function it came from; the script
that wrote them (tests/fixtures/make_reference_fixtures.py) ran the references in a separate
environment. Here the suite's own functions run on the same inputs and must give the same outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_samples import SAMPLES, requires_samples

from mamkpd.codecs import MSRAHeatmap, UDPHeatmap
from mamkpd.data import DATASETS, build_dataset
from mamkpd.data.transforms import affine_points, crop_to_image, flip_keypoints, get_affine_transform
from mamkpd.engine.inference import OKS_NMS_THR, RESCORE_THR, build_coco_results
from mamkpd.evaluation import mpii_pckh, oks_nms, oks_nms_indices, rescore

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def _json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _npz(name: str):
    return np.load(FIXTURES / name)


# ------------------------------------------------------------------------------------ crop geometry
def test_affine_transform_matches_hrnet():
    for case in _json("hrnet_affine_transform.json")["cases"]:
        scale_px = np.asarray(case["scale"]) * 200.0
        ours = get_affine_transform(case["center"], scale_px, case["rotation"], case["output_size"], bool(case["inv"]))
        np.testing.assert_allclose(ours, case["matrix"], rtol=1e-5, atol=1e-3, err_msg=str(case))


@pytest.mark.parametrize("version", ["mmpose1", "mmpose0"])
def test_udp_warp_matches_mmpose(version):
    """ViTPose's UDP crop: separate x and y factors, (W-1)/w and (H-1)/h, and MMPose's rotation direction."""
    for case in _json("udp_warp_matrix.json")["cases"]:
        ours = get_affine_transform(case["center"], case["scale"], case["rotation"], case["output_size"], udp=True)
        ref = np.asarray(case[version])
        # compare where the crop's corners come from: crop pixels -> image pixels
        w, h = case["output_size"]
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1], [(w - 1) / 2, (h - 1) / 2]])
        inv_ref = np.linalg.inv(np.vstack([ref, [0, 0, 1]]))[:2]
        inv_ours = get_affine_transform(
            case["center"], case["scale"], case["rotation"], case["output_size"], inverse=True, udp=True
        )
        np.testing.assert_allclose(affine_points(corners, inv_ours), affine_points(corners, inv_ref), atol=1e-3)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4, err_msg=str(case))


# ------------------------------------------------------------------------------------------- codecs
@pytest.fixture(scope="module")
def codec_ref():
    return _npz("heatmap_codecs.npz")


CODECS = {
    "msra": lambda: MSRAHeatmap((256, 192), (64, 48), sigma=2.0),
    "dark": lambda: MSRAHeatmap((256, 192), (64, 48), sigma=2.0, refine="dark"),
    "udp": lambda: UDPHeatmap((256, 192), (64, 48), sigma=2.0),
}


@pytest.mark.parametrize("name", list(CODECS))
def test_codec_targets_match_mmpose(codec_ref, name):
    """MSRA, DARK (unbiased) and UDP targets, for points inside, near and outside the border."""
    heatmaps, weights = CODECS[name]().encode(codec_ref["keypoints"], codec_ref["visible"] > 0)
    np.testing.assert_array_equal(weights, codec_ref[f"{name}_weights"])
    np.testing.assert_allclose(heatmaps, codec_ref[f"{name}_heatmaps"], atol=1e-6)


def _decode_to_image(codec_ref, name):
    codec = CODECS[name]()
    crop_xy, scores = codec.decode(codec_ref["decode_heatmaps"][None])
    image_xy = crop_to_image(crop_xy[0], codec_ref["center"], codec_ref["scale"], (256, 192), udp=codec.use_udp)
    return image_xy, scores[0]


@pytest.mark.parametrize(("name", "reference"), [("dark", "dark"), ("udp", "udp0")])
def test_codec_decoding_matches_reference(codec_ref, name, reference):
    """Decoded points in image pixels, for peaks inside and at the border. DARK: MMPose 1.x's codec and
    its top-down estimator's mapping back through the box. UDP: MMPose 0.x's keypoints_from_heatmaps
    with post_dark_udp, the path ViTPose's numbers come from."""
    image_xy, scores = _decode_to_image(codec_ref, name)
    np.testing.assert_allclose(scores, codec_ref[f"{reference}_scores"], rtol=1e-6)
    np.testing.assert_allclose(image_xy, codec_ref[f"{reference}_image_xy"], atol=2e-3)


def test_udp_decoding_matches_mmpose1_away_from_the_border(codec_ref):
    """MMPose 1.x's UDPHeatmap blurs with zero padding and restores each map's maximum before its
    Newton step, 0.x (ViTPose) blurs with cv2's reflected border: the two agree only for peaks at
    least the blur radius (5 px) from the border, where they must agree with the suite too."""
    image_xy, scores = _decode_to_image(codec_ref, "udp")
    heatmaps = codec_ref["decode_heatmaps"]
    h, w = heatmaps.shape[1:]
    peak = np.stack(np.unravel_index(heatmaps.reshape(len(heatmaps), -1).argmax(1), (h, w))[::-1], -1)
    inside = np.all((peak >= 5) & (peak <= np.array([w, h]) - 6), axis=1)
    assert inside.any()
    np.testing.assert_allclose(scores, codec_ref["udp_scores"], rtol=1e-6)
    np.testing.assert_allclose(image_xy[inside], codec_ref["udp_image_xy"][inside], atol=2e-3)


def test_msra_decoding_matches_hrnet_final_preds():
    """HRNet's get_final_preds: argmax, quarter offset where the peak is inside, back through the box;
    includes peaks on the border and maps with no positive value."""
    ref = _npz("hrnet_final_preds.npz")
    heatmaps = ref["heatmaps"].astype(np.float32)
    codec = MSRAHeatmap((256, 192), (64, 48))
    crop_xy, scores = codec.decode(heatmaps)
    np.testing.assert_allclose(scores, ref["maxvals"], rtol=1e-6)
    for n in range(len(heatmaps)):
        image_xy = crop_to_image(crop_xy[n], ref["center"][n], ref["scale_200"][n] * 200.0, (256, 192))
        np.testing.assert_allclose(image_xy, ref["preds"][n], atol=1e-3)


# ------------------------------------------------------------------------------- rescoring and NMS
def _prediction_arrays(inputs: dict) -> dict:
    preds = np.asarray(inputs["preds"], dtype=np.float32)
    boxes = np.asarray(inputs["all_boxes"], dtype=np.float32)
    n = len(preds)
    return {
        "instance_index": np.arange(n),
        "image_id": np.array([int(p[-16:-4]) for p in inputs["img_path"]]),
        "category_id": np.ones(n, dtype=int),
        "keypoints": preds[..., :2],
        "scores": preds[..., 2],
        "box_score": boxes[:, 5],
        "area": boxes[:, 4],
    }


def test_rescoring_and_oks_nms_match_hrnet():
    """The suite's COCO post-processing (as engine.inference.evaluate runs it) against HRNet's
    evaluate: the same people kept, in the same order, with the same rescored scores. Keypoint
    scores just above the 0.2 threshold must count, so nothing may be rounded before this step."""
    ref = _json("hrnet_rescore_oks_nms.json")
    results = build_coco_results(_prediction_arrays(ref["inputs"]))
    kept = oks_nms(rescore(results, thr=RESCORE_THR), thr=OKS_NMS_THR, sigmas=DATASETS["coco"].sigmas)
    assert [r["image_id"] for r in kept] == [r["image_id"] for r in ref["kept"]]
    np.testing.assert_allclose([r["score"] for r in kept], [r["score"] for r in ref["kept"]], rtol=1e-6)
    np.testing.assert_allclose([r["keypoints"] for r in kept], [r["keypoints"] for r in ref["kept"]], atol=1e-4)


def test_oks_nms_with_ap10k_sigmas_matches_mmpose():
    ref = _json("hrnet_rescore_oks_nms.json")
    results = rescore(build_coco_results(_prediction_arrays(ref["inputs"])), thr=RESCORE_THR)
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    groups = list(by_image.values())
    assert len(groups) == len(ref["ap10k_kept"])
    for group, scores, kept in zip(groups, ref["ap10k_rescored_scores"], ref["ap10k_kept"], strict=True):
        np.testing.assert_allclose([r["score"] for r in group], scores, rtol=1e-6)
        kp = np.array([np.reshape(r["keypoints"], (-1, 3)) for r in group])
        ours = oks_nms_indices(
            kp, np.array(scores), np.array([r["area"] for r in group]), 0.9, DATASETS["ap10k"].sigmas
        )
        assert ours == kept


# -------------------------------------------------------------------------------------------- AP-10K
def test_ap10k_sigmas_and_flip_pairs_match_mmpose():
    ref = _json("ap10k_constants.json")
    info = DATASETS["ap10k"]
    assert info.num_keypoints == len(ref["keypoint_names"])
    np.testing.assert_allclose(info.sigmas, ref["sigmas"], rtol=1e-7)  # MMPose keeps them as float32
    assert {tuple(sorted(p)) for p in info.flip_pairs} == {tuple(sorted(p)) for p in ref["flip_pairs"]}


def test_ap10k_recipe_matches_mmpose0_config():
    """Half-body's upper/lower split (right front paw, 10, is lower), the box-centre shift, the other
    factors, and the order of the steps of MMPose 0.x's AP-10K training pipeline."""
    ref = _json("ap10k_constants.json")
    info = DATASETS["ap10k"]
    assert sorted(info.upper_body_ids) == ref["upper_body_ids"]
    assert sorted(set(range(info.num_keypoints)) - set(info.upper_body_ids)) == ref["lower_body_ids"]
    steps = {s["type"]: s for s in ref["train_pipeline"]}
    aug = info.augment
    assert (aug.center_shift_factor, aug.center_shift_prob) == (
        steps["TopDownRandomShiftBboxCenter"]["shift_factor"],
        steps["TopDownRandomShiftBboxCenter"]["prob"],
    )
    assert aug.flip_prob == steps["TopDownRandomFlip"]["flip_prob"]
    assert (aug.half_body_min_joints, aug.half_body_prob) == (
        steps["TopDownHalfBodyTransform"]["num_joints_half_body"],
        steps["TopDownHalfBodyTransform"]["prob_half_body"],
    )
    rot = steps["TopDownGetRandomScaleRotation"]
    assert (aug.rotation_factor, aug.scale_factor) == (rot["rot_factor"], rot["scale_factor"])
    order = [s["type"] for s in ref["train_pipeline"]]
    flip_first = order.index("TopDownRandomFlip") < order.index("TopDownHalfBodyTransform")
    assert aug.order == ("mmpose" if flip_first else "hrnet")


class ScriptedRng:
    """Replays the random draws a reference recorded, checking that each is asked for in its order."""

    KINDS = {"random": "rand", "standard_normal": "randn", "uniform": "uniform"}

    def __init__(self, draws):
        self.draws = list(draws)

    def _next(self, kind):
        assert self.draws, f"{kind} drawn after the reference's last draw"
        want, value = self.draws.pop(0)
        assert want == self.KINDS[kind], f"drew {self.KINDS[kind]} where the reference drew {want}"
        return value

    def random(self):
        return self._next("random")

    def standard_normal(self):
        return self._next("standard_normal")

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.asarray(self._next("uniform"))


@requires_samples
def test_ap10k_augmentation_replays_mmpose0_pipeline(monkeypatch):
    """MMPose 0.x's AP-10K recipe, draw for draw: box-centre shift, flip, half-body (paw 10 typed
    lower), scale and rotation, in that order; the crop's centre, size, rotation and joints agree."""
    ref = _json("ap10k_augmentation.json")
    ann = SAMPLES / "ap10k" / ref["ann_file"]
    ds = build_dataset("ap10k", "train", ann_file=str(ann), image_dir=str(ann.parent), train=True, seed=0)
    gt = json.loads(ann.read_text())
    target = next(a for a in gt["annotations"] if a["id"] == ref["annotation_id"])
    index = next(
        i
        for i, r in enumerate(ds.records)
        if r.image_id == target["image_id"]
        and np.allclose(r.keypoints[:, :2], np.reshape(target["keypoints"], (-1, 3))[:, :2])
    )
    rec = ds.records[index]
    np.testing.assert_allclose(rec.center, ref["initial_center"], atol=1e-3)
    np.testing.assert_allclose(rec.scale, ref["initial_scale_px"], rtol=1e-5)
    w, h = ref["image_size_wh"]
    image = np.zeros((h, w, 3), dtype=np.uint8)
    for trial in ref["trials"]:
        rng = ScriptedRng(trial["draws"])
        monkeypatch.setattr(ds, "_rng", lambda i, rng=rng: rng)
        meta = ds._make_item(index, rec, image)["meta"]
        assert not rng.draws, f"the reference drew {len(rng.draws)} more number(s): {rng.draws}"
        assert meta["flipped"] == trial["flipped"]
        assert meta["rotation"] == pytest.approx(trial["rotation"])
        np.testing.assert_allclose(meta["center"], trial["center"], atol=1e-3)
        np.testing.assert_allclose(meta["scale"], trial["scale_px"], rtol=1e-5)
        kp = flip_keypoints(rec.keypoints, w, ds.info.flip_pairs) if meta["flipped"] else rec.keypoints
        crop = get_affine_transform(meta["center"], meta["scale"], meta["rotation"], (256, 256))
        visible = np.asarray(trial["visible"]) > 0
        joints = affine_points(kp[:, :2], crop)
        np.testing.assert_allclose(joints[visible], np.asarray(trial["joints"])[visible], atol=2e-3)


@requires_samples
def test_eval_results_ap10k_matches_xtcocotools_with_mmpose_sigmas():
    ref = _json("ap10k_samples_ap.json")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mamkpd.cli",
            "eval-results",
            "--dataset",
            "ap10k",
            "--ann-file",
            str(SAMPLES / "ap10k" / "test_ap10k.json"),
            "--results",
            str(FIXTURES / ref["results_file"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name, value in ref["stats"].items():
        if value == -1:  # COCOeval's "no ground truth in this area range"; the CLI prints null
            assert out[name] is None, name
        else:
            assert out[name] == pytest.approx(value, abs=1e-12), name


# --------------------------------------------------------------------------------------------- MPII
def test_mpii_pckh_matches_hrnet_with_its_mean_at_0_1_named_truthfully():
    """HRNet's PCKh columns exactly; its 'Mean@0.1' is PCKh at 0.11 and is reported under a name that
    says so, beside a true Mean@0.1."""
    ref = _json("hrnet_mpii_pckh.json")
    ours = mpii_pckh(np.asarray(ref["preds0"], dtype=np.float64), str(FIXTURES / ref["gt_mat"]))
    hrnet = dict(ref["name_value"])
    hrnet_mean01 = hrnet.pop("Mean@0.1")
    for name, value in hrnet.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
    assert ref["mean01_threshold"] == pytest.approx(0.11)
    assert ours["HRNet Mean@0.1 (PCKh@0.11)"] == pytest.approx(hrnet_mean01, abs=1e-9)
    at_01 = mpii_pckh(np.asarray(ref["preds0"], dtype=np.float64), str(FIXTURES / ref["gt_mat"]), threshold=0.1)
    assert ours["Mean@0.1"] == pytest.approx(at_01["Mean"], abs=1e-9)
    assert ours["Mean@0.1"] != pytest.approx(hrnet_mean01, abs=1e-3)  # the fixture separates them


# --------------------------------------------------------------------------------------------- RTMO
def test_rtmo_decoding_matches_mmpose():
    """RTMOHead.predict's people (boxes, scores, DCC keypoints) for fixed head outputs: priors of
    MlvlPointGenerator(centralize_points=True), x*stride + (stride-1)/2."""
    import mamkpd
    from baselines.rtmo import _priors

    ref = _npz("rtmo_decode.npz")
    h, w = (int(v) for v in ref["input_hw"])
    model = mamkpd.create_model("rtmo_s", input_size=(h, w)).eval()
    priors, _ = _priors([(h // s, w // s) for s in (16, 32)], torch.device("cpu"))
    np.testing.assert_allclose(priors.numpy(), ref["priors"], atol=1e-6)
    state = model.head.dcc.state_dict()
    names = [str(n) for n in ref["dcc_names"]]
    assert set(names) <= set(state), sorted(set(names) - set(state))
    rng = np.random.default_rng(int(ref["dcc_seed"]))  # the fixture's DCC weights, drawn as its source says
    with torch.no_grad():
        for k in names:
            shape = tuple(state[k].shape)
            if k.endswith("running_var"):
                value = rng.uniform(0.5, 1.5, size=shape)
            elif k.endswith("running_mean"):
                value = rng.normal(0, 0.1, size=shape)
            else:
                value = rng.normal(0, 0.05, size=shape)
            state[k].copy_(torch.from_numpy(value))
    outputs = tuple(torch.from_numpy(ref[k]) for k in ("cls", "bbox", "vis", "pose"))
    (people,) = model.decode(outputs)
    np.testing.assert_allclose(people["scores"].numpy(), ref["scores"], rtol=1e-6)
    np.testing.assert_allclose(people["bboxes"].numpy(), ref["bboxes"], atol=1e-3)
    np.testing.assert_allclose(people["keypoints"].numpy(), ref["keypoints"], atol=2e-3)
    np.testing.assert_allclose(people["keypoint_scores"].numpy(), ref["keypoint_scores"], rtol=1e-6)
