"""Lite-HRNet and Dite-HRNet against the official code: MMPose 1.3.2's LiteHRNet
(tests/fixtures/litehrnet_forward.npz) and ZiyiZhang27/Dite-HRNet's DiteHRNet (ditehrnet_forward.npz). The
official state_dict layouts load strictly, the heatmaps of name-seeded weights on a seeded input equal the
official ones, Lite-HRNet's flip test (shifted, as the configs' ``shift_heatmap=True``) equals
HeatmapHead.predict's and Dite-HRNet's equals MMPose 0.x TopDown.forward_test's (ditehrnet_flip.npz); parameter
counts against the official builds and the READMEs, GFLOPs against the READMEs' figures and the paper's Table 2
cells."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_samples import sample
from seeded_weights import seeded_tensor
from test_cli_evaluate import mamkpd_cli
from worker_groups import MODEL_COUNTS

import mamkpd
from mamkpd.codecs import build_codec
from mamkpd.engine import predict_outputs
from mamkpd.harness.measure.complexity import measure_complexity, measure_complexity_hrnet_repo
from mamkpd.models.checkpoint import load_weights_from_state
from mamkpd.paper import compared_model, load_table
from mamkpd.paper.published import PUBLISHED_PARAMS
from mamkpd.paper.tolerances import PARAMS_REL_BASELINE, PRINTED_UNIT

FIXTURES = {f: np.load(Path(__file__).parent / "fixtures" / f"{f}_forward.npz") for f in ("litehrnet", "ditehrnet")}
# the layout of each fixture's state_dict: MMPose 1.x (head.*), Dite-HRNet's release (MMPose 0.x, keypoint_head.*)
FIXTURE_LAYOUT = {"litehrnet": "native", "ditehrnet": "mmpose0"}
CASES = [(family, case) for family in FIXTURES for case in ("18", "18_small", "30_small")]
INPUT_SEED = 37  # make_reference_fixtures.RTMPOSE_INPUT_SEED, which litehrnet() and ditehrnet() use too
COCO_FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
# Lite-HRNet-30's fusions double the stride-4 branch in each of its 14 modules: maps reach ~1e4 on seeded
# weights, where float32 itself differs from float64 by ~7e-4 of the scale (the official model's as much as ours)
RELATIVE_TOLERANCE = {"18": 1e-5, "18_small": 1e-5, "30_small": 1e-3}


def model_name(family: str, case: str) -> str:
    return f"{family}_{case[:2]}"


def hw_of(family: str, case: str) -> tuple[int, int]:
    return tuple(int(v) for v in FIXTURES[family][f"{case}_input_hw"])


def official_state(family: str, case: str) -> dict[str, torch.Tensor]:
    """The official model's state_dict (its names and shapes, recorded in the fixture), name-seeded."""
    names = FIXTURES[family][f"{case}_names"].tolist()
    shapes = json.loads(str(FIXTURES[family][f"{case}_shapes"]))
    return {n: seeded_tensor(n, tuple(s)) for n, s in zip(names, shapes, strict=True)}


def release_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MMPose 0.x's names, as the official releases' checkpoints have them: ``keypoint_head.*``."""
    return {("keypoint_" + k if k.startswith("head.") else k): v for k, v in state.items()}


@functools.cache
def seeded_model(family: str, case: str) -> torch.nn.Module:
    model = mamkpd.create_model(model_name(family, case), input_size=hw_of(family, case)).eval()
    report = load_weights_from_state(model, official_state(family, case), source=f"official {family} {case}")
    assert report.clean and report.layout == FIXTURE_LAYOUT[family], report.summary()
    return model


def seeded_input(family: str, case: str) -> torch.Tensor:
    batch = int(FIXTURES[family][f"{case}_batch"])
    return torch.randn((batch, 3, *hw_of(family, case)), generator=torch.Generator().manual_seed(INPUT_SEED))


@pytest.mark.parametrize("family, case", CASES)
def test_heatmaps_equal_the_official_model(family, case):
    with torch.no_grad():
        heatmaps = seeded_model(family, case)(seeded_input(family, case)).numpy()
    ref = FIXTURES[family][f"{case}_heatmaps"]
    assert heatmaps.shape == ref.shape
    assert np.abs(heatmaps - ref).max() <= RELATIVE_TOLERANCE[case] * np.abs(ref).max()


@pytest.mark.parametrize("family, case", CASES)
def test_our_names_and_shapes_are_the_official_ones(family, case):
    with torch.device("meta"):
        model = mamkpd.create_model(model_name(family, case), input_size=hw_of(family, case))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    names, shapes = FIXTURES[family][f"{case}_names"].tolist(), json.loads(str(FIXTURES[family][f"{case}_shapes"]))
    official = dict(zip(names, map(tuple, shapes), strict=True))
    assert (ours if FIXTURE_LAYOUT[family] == "native" else release_layout(ours)) == official


def test_lite_hrnet_release_layout_loads_strictly():
    """The official Lite-HRNet release (HRNet/Lite-HRNet, MMPose 0.x) names the head ``keypoint_head``."""
    state = release_layout(official_state("litehrnet", "18_small"))
    model = mamkpd.create_model("litehrnet_18", input_size=(128, 96))
    report = load_weights_from_state(model, state, source="official release layout")
    assert report.layout == "mmpose0" and report.clean, report.summary()
    assert torch.equal(model.head.final_layer.weight, state["keypoint_head.final_layer.weight"])


def test_flip_test_equals_the_official_test_path():
    """predict_outputs with the msra codec (flip_back with the one-pixel shift, average) against
    HeatmapHead.predict with the config's test_cfg. Decoded keypoints equal where the maximum is positive and
    off the border: there MMPose 1.x moves each axis on its own, while the suite's decoding, like the official
    release's (MMPose 0.x ``post_process='default'``, HRNet's get_final_preds), moves neither; a non-positive
    maximum is -1 heatmap pixels in MMPose 1.x, the argmax here."""
    fixture = FIXTURES["litehrnet"]
    model = seeded_model("litehrnet", "18_small")
    codec = build_codec(mamkpd.model_info("litehrnet_18").codec, hw_of("litehrnet", "18_small"))
    assert codec.flip_shift
    with torch.no_grad():
        averaged = predict_outputs(model, seeded_input("litehrnet", "18_small"), codec, COCO_FLIP_PAIRS).numpy()
    ref = fixture["flip_heatmaps"]
    assert np.abs(averaged - ref).max() <= 1e-5 * np.abs(ref).max()
    keypoints, scores = codec.decode(averaged)
    assert np.allclose(scores, fixture["flip_scores"], rtol=1e-4, atol=1e-6)
    official = fixture["flip_keypoints"]
    peak = np.rint(official / mamkpd.model_info("litehrnet_18").heatmap_stride)  # the argmax, in heatmap pixels
    h, w = ref.shape[-2:]
    inside = (peak[..., 0] > 1) & (peak[..., 0] < w - 1) & (peak[..., 1] > 1) & (peak[..., 1] < h - 1)
    compared = inside & (fixture["flip_scores"] > 0)
    assert compared.sum() > 12 and np.array_equal(keypoints[compared], official[compared])
    assert not np.array_equal(keypoints[~compared], official[~compared])  # the fixture holds border cases too


def test_dite_hrnet_flip_test_equals_the_official_test_path():
    """predict_outputs with Dite-HRNet's codec against MMPose 0.x's TopDown.forward_test (the release's framework:
    inference_model's flip_back with the config's shift_heatmap=True, then the average), tests/fixtures/
    ditehrnet_flip.npz; the same name-seeded Dite-HRNet-18 and input as its forward fixture."""
    fixture = np.load(Path(__file__).parent / "fixtures" / "ditehrnet_flip.npz")
    hw = tuple(int(v) for v in fixture["input_hw"])
    assert hw == hw_of("ditehrnet", "18_small") and int(fixture["batch"]) == 2
    model = seeded_model("ditehrnet", "18_small")
    codec = build_codec(mamkpd.model_info("ditehrnet_18").codec, hw)
    with torch.no_grad():
        averaged = predict_outputs(model, seeded_input("ditehrnet", "18_small"), codec, COCO_FLIP_PAIRS).numpy()
    ref = fixture["flip_heatmaps"]
    assert averaged.shape == ref.shape == (2, 17, 32, 24)
    assert np.abs(averaged - ref).max() <= 1e-5 * np.abs(ref).max()
    assert codec.flip_shift


@pytest.mark.parametrize("family, readme", [("litehrnet", (1.1, 1.8)), ("ditehrnet", (1.1, 1.8))])
def test_params_equal_the_official_build_and_the_readme(family, readme):
    """Exact counts of the official builds; the READMEs print them to 0.1M (Lite-HRNet rounds its 1.76M up,
    Dite-HRNet truncates its 1.19M and 1.86M)."""
    for case, printed in zip(("18", "30_small"), readme, strict=True):
        name = model_name(family, case)
        count = mamkpd.count_params(name)
        assert count == int(FIXTURES[family][f"{case}_params"])
        published = PUBLISHED_PARAMS[name].params_m
        assert abs(count / 1e6 - published) <= PARAMS_REL_BASELINE * published
        assert abs(count / 1e6 - printed) < PRINTED_UNIT


@functools.cache
def fvcore_count(name: str):
    return measure_complexity(name)  # at the registered input size


@MODEL_COUNTS
@pytest.mark.slow  # fvcore traces ~1000 small modules: 10-30 s a count on the shared cores
@pytest.mark.parametrize(
    "name",
    ["litehrnet_18", "litehrnet_30", "ditehrnet_18", "ditehrnet_30", "litehrnet_30_384x288", "ditehrnet_30_384x288"],
)
def test_gflops_against_the_readme(name):
    """The READMEs count with a torchstat-based tool (conv, BN, ReLU, pooling, upsampling modules): between the
    HRNet repository's conv-only count and fvcore's, which adds the functional pooling, interpolation, gating and
    (Dite-HRNet) the kernel mixing."""
    fvcore = fvcore_count(name)
    assert fvcore.uncounted_non_free == {}, fvcore.unsupported_ops
    conv_only = measure_complexity_hrnet_repo(name).gflops
    published = PUBLISHED_PARAMS[name].gflops
    assert conv_only < published < fvcore.gflops < 1.1 * published


@pytest.mark.slow
@pytest.mark.parametrize(
    "row, name, readme_256, readme_384",
    [("Lite-HRNet", "litehrnet_30", 319.2, 717.8), ("Dite-HRNet", "ditehrnet_30", 329.8, 741.7)],
)
def test_table2_prints_the_384x288_gflops_of_the_30_layer_model(row, name, readme_256, readme_384):
    """Table 2's 0.7 GFLOPs (Lite-HRNet and Dite-HRNet rows) are the -30 models' 384x288 figures in their READMEs
    (MFLOPs), not their 256x192 ones; our counts scale between the two sizes as the READMEs' do. The table
    compares that cell, and the row's accuracy (the 384x288 model's too), with the registered 384x288 model."""
    paper = load_table("table2").set_index("row").loc[row]
    at_size = f"{name}_384x288"
    assert paper["registry_name"] == name and mamkpd.model_info(at_size).input_size == (384, 288)
    assert compared_model(paper, "params_m") == name  # one network: the same count at either size
    assert all(compared_model(paper, m) == at_size for m in ("gflops", "AP", "AP50", "AP75", "APM", "APL", "AR"))
    count = mamkpd.count_params(at_size)
    assert count == mamkpd.count_params(name)
    assert (
        abs(count / 1e6 - PUBLISHED_PARAMS[at_size].params_m)
        <= PARAMS_REL_BASELINE * PUBLISHED_PARAMS[at_size].params_m
    )
    assert round(readme_384 / 1000, 1) == paper["gflops"] and round(readme_256 / 1000, 1) != paper["gflops"]
    assert PUBLISHED_PARAMS[at_size].gflops == readme_384 / 1000
    at_256 = fvcore_count(name).gflops
    at_384 = fvcore_count(at_size).gflops
    assert abs(at_256 - paper["gflops"]) > 3 * PRINTED_UNIT
    assert abs(at_384 / at_256 - readme_384 / readme_256) < 0.02


@pytest.mark.parametrize("family", list(FIXTURES))
def test_input_size_and_keypoints(family):
    with torch.device("meta"):
        model = mamkpd.create_model(f"{family}_30", num_keypoints=16, input_size=(256, 256)).eval()
        heatmaps = model(torch.empty(1, 3, 256, 256))
    assert heatmaps.shape == (1, 16, 64, 64)
    with pytest.raises(ValueError, match=f"{family}_18: input_size must be .* multiples of 32"):
        mamkpd.create_model(f"{family}_18", input_size=(256, 200))


def test_cli_evaluates_an_official_release_checkpoint(tmp_path):
    """`mamkpd evaluate --model litehrnet_18` on a checkpoint in the official release's layout (mmcv's
    ``state_dict`` wrapper, ``keypoint_head``): it loads and runs MSRA's flip test with the shift."""
    model = mamkpd.create_model("litehrnet_18", input_size=(128, 96))
    state = release_layout(model.state_dict())
    checkpoint = tmp_path / "litehrnet_18.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": state}, checkpoint)
    ann = sample("coco", "test_coco.json")
    args = ["evaluate", "--checkpoint", str(checkpoint), "--model", "litehrnet_18", "--dataset", "coco"]
    args += ["--ann-file", str(ann), "--image-dir", str(ann.parent), "--input-size", "128", "96"]
    args += ["--device", "cpu", "--workers", "0", "--json", "--results", str(tmp_path / "results.json")]
    proc = mamkpd_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    protocol = json.loads(proc.stdout)["protocol"]
    assert protocol["codec"] == "msra" and protocol["flip_test"] is True and protocol["flip_shift"] is True
