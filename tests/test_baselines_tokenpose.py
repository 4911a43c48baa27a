"""TokenPose and PPT against the official code: heatmaps of the official models on a fixed input with the same
name-seeded weights (tests/fixtures/{tokenpose,ppt}_forward.npz), the official flip test and decoding, the
official checkpoint layout, PPT's pruning, and what fvcore counts (the published GFLOPs, the HRNet repository
counter's, are checked in tests/test_baselines_complexity.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_samples import sample
from seeded_weights import seeded_tensor
from worker_groups import MODEL_COUNTS

import mamkpd
from mamkpd.codecs import build_codec
from mamkpd.data import DATASETS
from mamkpd.engine.inference import predict_outputs
from mamkpd.harness.measure.complexity import measure_complexity
from mamkpd.paper.published import PUBLISHED_PARAMS
from mamkpd.paper.tolerances import PRINTED_UNIT

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
INPUT_SEED = 31  # the fixtures' torch.Generator seed of the input


def seeded_input(hw) -> torch.Tensor:
    return torch.randn((1, 3, *hw), generator=torch.Generator().manual_seed(INPUT_SEED))


def official_weights(model: torch.nn.Module, ref, case: str) -> torch.nn.Module:
    """Load the official state_dict layout of ``case`` (its names and shapes) filled with the name-seeded
    values, strictly; the sine position table is the model's own, as the official one is computed too."""
    names = [str(n) for n in ref[f"{case}_names"]]
    shapes = json.loads(str(ref[f"{case}_shapes"]))
    own = model.state_dict()
    state = {}
    for name, shape in zip(names, shapes, strict=True):
        if name.endswith("pos_embedding") or not own[name].is_floating_point():
            state[name] = own[name]
        else:
            state[name] = seeded_tensor(name, tuple(shape))
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def tokenpose_ref():
    return np.load(FIXTURES / "tokenpose_forward.npz")


@pytest.mark.parametrize("case", ["s_v1", "b", "l_d6"])
def test_tokenpose_heatmaps_match_the_official_model(tokenpose_ref, case):
    hw = tuple(int(v) for v in tokenpose_ref[f"{case}_input_hw"])
    model = official_weights(mamkpd.create_model(f"tokenpose_{case}", input_size=hw), tokenpose_ref, case)
    with torch.no_grad():
        ours = model(seeded_input(hw)).numpy()
    ref = tokenpose_ref[f"{case}_heatmaps"]
    assert ours.shape == ref.shape == (1, 17, hw[0] // 4, hw[1] // 4)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_tokenpose_flip_test_and_decoding_match_the_official_test_path(tokenpose_ref):
    """validate(): flip_back and average without SHIFT_HEATMAP; get_final_preds with POST_PROCESS (DARK)."""
    hw = tuple(int(v) for v in tokenpose_ref["flip_input_hw"])
    model = official_weights(mamkpd.create_model("tokenpose_s_v1", input_size=hw), tokenpose_ref, "flip")
    codec = build_codec(mamkpd.model_info("tokenpose_s_v1").codec, hw)
    assert codec.flip_shift is False and codec.use_udp
    with torch.no_grad():
        averaged = predict_outputs(model, seeded_input(hw), codec, DATASETS["coco"].flip_pairs)
    ref = tokenpose_ref["flip_averaged"]
    np.testing.assert_allclose(averaged.numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # the fixture's box is the crop itself (centre (W - 1) / 2, width W), so get_final_preds gives crop pixels
    keypoints, scores = codec.decode(ref)
    np.testing.assert_allclose(keypoints, tokenpose_ref["final_preds"], atol=2e-3)
    np.testing.assert_allclose(scores, tokenpose_ref["final_maxvals"][..., 0], rtol=1e-6)


@MODEL_COUNTS
def test_tokenpose_gflops_the_paper_counts_leave_out_the_attention_fvcore_counts():
    """TokenPose-S-v1's published 2.2 GFLOPs is the HRNet repository counter's (conv and linear layers over 2**30,
    tests/test_baselines_complexity.py checks every published figure); fvcore's multiply-adds, the suite's
    convention, add the attention products and leave no costly op uncounted."""
    c = measure_complexity("tokenpose_s_v1")
    assert c.uncounted_non_free == {}, c.unsupported_ops
    assert c.by_operator["matmul"] > 0.3e9 and c.gflops > PUBLISHED_PARAMS["tokenpose_s_v1"].gflops + PRINTED_UNIT


def test_tokenpose_input_size_is_checked_against_the_patch_grid():
    with pytest.raises(ValueError, match="input_size.*W of 12"):
        mamkpd.create_model("tokenpose_s_v1", input_size=(256, 200))
    with pytest.raises(ValueError, match="input_size.*multiples? of 16"):
        mamkpd.create_model("tokenpose_b", input_size=(264, 192))
    model = mamkpd.create_model("tokenpose_s_v1", num_keypoints=16, input_size=(192, 144)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 192, 144)).shape == (1, 16, 48, 36)


def test_darkpose_targets_decode_back_to_the_keypoint():
    """DarkPose's grid both ways: a Gaussian drawn at a crop point decodes (DARK) back to it, rows included."""
    codec = build_codec("darkpose", (128, 96))
    keypoints = np.array([[40.3, 70.8], [61.7, 30.2]])
    heatmaps, weights = codec.encode(keypoints, np.ones(2))
    decoded, _ = codec.decode(heatmaps[None])
    np.testing.assert_allclose(decoded[0], keypoints, atol=0.05)
    assert weights.tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------------ PPT
@pytest.fixture(scope="module")
def ppt_ref():
    return np.load(FIXTURES / "ppt_forward.npz")


@pytest.mark.parametrize("case", ["s", "b"])
def test_ppt_heatmaps_with_pruning_match_the_official_model(ppt_ref, case):
    hw = tuple(int(v) for v in ppt_ref["input_hw"])
    model = official_weights(mamkpd.create_model(f"ppt_{case}", input_size=hw), ppt_ref, case)
    with torch.no_grad():
        ours = model(seeded_input(hw)).numpy()
    ref = ppt_ref[f"{case}_heatmaps"]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_ppt_prunes_in_the_forward_pass_and_is_tokenpose_without_pruning(ppt_ref):
    """8 x 8 visual tokens at 128x96: ceil(0.7 n) kept after layers 3, 6, 9 -> 45, 32, 23 reach the feed-forward."""
    hw = tuple(int(v) for v in ppt_ref["input_hw"])
    ppt = official_weights(mamkpd.create_model("ppt_s", input_size=hw), ppt_ref, "s")
    seen = []
    for layer in ppt.features.transformer.layers:
        layer[1].register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape[1] - 17))
    x = seeded_input(hw)
    with torch.no_grad():
        pruned = ppt(x)
    assert seen == [64] * 3 + [45] * 3 + [32] * 3 + [23] * 3
    # the same weights under TokenPose's names (its attention sits in a Residual: one more "fn.")
    state = {
        k.replace(".0.norm.", ".0.fn.norm.").replace(".0.fn.to_", ".0.fn.fn.to_"): v
        for k, v in ppt.state_dict().items()
    }
    tokenpose = mamkpd.create_model("tokenpose_s_v1", input_size=hw).eval()
    tokenpose.load_state_dict(state, strict=True)
    ppt.features.transformer.keep_ratio = 1.0
    with torch.no_grad():
        unpruned = ppt(x)
        np.testing.assert_allclose(unpruned.numpy(), tokenpose(x).numpy(), rtol=0, atol=1e-5)
    assert not torch.allclose(pruned, unpruned, atol=1e-3)


def test_ppt_costs_less_than_tokenpose():
    """At 128x96 the transformer layers after the first pruning see 45, 32, 23 instead of 64 visual tokens."""
    c = measure_complexity("ppt_s", input_size=(128, 96))
    assert c.uncounted_non_free == {}, c.unsupported_ops
    tokenpose = measure_complexity("tokenpose_s_v1", input_size=(128, 96))
    assert c.by_operator["linear"] < 0.8 * tokenpose.by_operator["linear"]


def test_cli_evaluates_an_official_layout_checkpoint_with_darkposes_test_path(tmp_path):
    """`mamkpd evaluate --model tokenpose_s_v1` on a checkpoint in the official release's layout (DataParallel's
    ``module.`` prefix, no wrapper): it loads strictly and runs the flip test without a shift, DARK decoding."""
    model = mamkpd.create_model("tokenpose_s_v1", input_size=(128, 96))
    checkpoint = tmp_path / "tokenpose_s_v1.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, checkpoint)
    ann = sample("coco", "test_coco.json")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["evaluate", "--checkpoint", str(checkpoint), "--model", "tokenpose_s_v1", "--dataset", "coco"]
    args += ["--ann-file", str(ann), "--image-dir", str(ann.parent), "--input-size", "128", "96"]
    args += ["--device", "cpu", "--workers", "0", "--json", "--results", str(tmp_path / "results.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    protocol = json.loads(proc.stdout)["protocol"]
    assert protocol["codec"] == "darkpose" and protocol["flip_test"] is True and protocol["flip_shift"] is False
