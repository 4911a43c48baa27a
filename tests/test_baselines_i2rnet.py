"""I²R-Net against the official code: heatmaps of the official model on fixed crops with the same name-seeded
weights (tests/fixtures/i2rnet_forward.npz), each crop its own group and crops grouped as the official
``length``, the first stage's own head, the official flip test and decoding, the parameter count and what
fvcore counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_weights import seeded_tensor

import mamkpd
from mamkpd.codecs import build_codec
from mamkpd.data import DATASETS
from mamkpd.engine.inference import predict_outputs
from mamkpd.paper.published import PUBLISHED_PARAMS
from mamkpd.paper.tolerances import PARAMS_REL_BASELINE

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
NAME = "i2rnet_hrformer_b"
# what fvcore leaves uncounted here: shape arithmetic, elementwise ops, softmax, GELU, pooling, padding
FREE_OPS = {f"aten::{op}" for op in ("add", "neg", "sub", "mul", "pow", "softmax", "gelu", "max_pool2d", "pad")}
INPUT_SEED = 53  # the fixture's torch.Generator seed: the three tiny crops, then the flip-test crop


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURES / "i2rnet_forward.npz")


@pytest.fixture(scope="module")
def inputs(ref):
    g = torch.Generator().manual_seed(INPUT_SEED)
    tiny = torch.randn((int(ref["groups"].sum()), 3, *ref["tiny_input_hw"].tolist()), generator=g)
    return tiny, torch.randn((1, 3, *ref["flip_input_hw"].tolist()), generator=g)


def official_weights(model: torch.nn.Module, ref) -> torch.nn.Module:
    """The official state_dict layout (names and shapes) filled with the name-seeded values, loaded strictly;
    integer buffers (window index tables, BN counters) are the model's own."""
    own = model.state_dict()
    shapes = json.loads(str(ref["shapes"]))
    state = {}
    for name, shape in zip((str(n) for n in ref["names"]), shapes, strict=True):
        state[name] = seeded_tensor(name, tuple(shape)) if own[name].is_floating_point() else own[name]
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model(ref):
    torch.set_num_threads(2)
    return official_weights(mamkpd.create_model(NAME, input_size=tuple(ref["tiny_input_hw"].tolist())), ref)


def assert_close(ours: torch.Tensor, expected: np.ndarray) -> None:
    assert tuple(ours.shape) == expected.shape
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_heatmaps_match_the_official_model_one_crop_per_group(tiny_model, ref, inputs):
    """The default: every crop its own group, as the official COCO evaluation with detected boxes runs it."""
    with torch.no_grad():
        assert_close(tiny_model(inputs[0]), ref["tiny_multi"])


def test_grouped_crops_match_the_official_padded_groups(tiny_model, ref, inputs):
    """``lengths`` as the official ``length``: a group of two and a group of one padded and masked. The inter-human
    part moves the heatmaps little against the first stage's residual, so its effect, the change from one crop per
    group, is compared on its own scale too."""
    groups = ref["groups"].tolist()
    with torch.no_grad():
        alone, grouped = tiny_model(inputs[0]), tiny_model(inputs[0], lengths=groups)
    assert_close(grouped, ref["tiny_grouped_multi"])
    effect = ref["tiny_grouped_multi"] - ref["tiny_multi"]
    per_crop = np.abs(effect).max(axis=(1, 2, 3))
    # the two people of the first group see each other; the third, alone in its padded group, is unmoved
    assert per_crop[:2].min() > 1e-3 and per_crop[2] < 1e-4, per_crop
    np.testing.assert_allclose((grouped - alone).numpy(), effect, rtol=0, atol=5e-3 * np.abs(effect).max())


def test_first_stage_head_matches_the_official_intermediate_heatmaps(tiny_model, ref, inputs):
    single = tiny_model.singleformer
    with torch.no_grad():
        assert_close(single.keypoint_head.final_layer(single(inputs[0])), ref["tiny_single"])


def test_flip_test_and_decoding_match_the_official_test_path(ref, inputs):
    """validate() with detected boxes: flip_back and average without a shift; get_final_preds (DARK)."""
    hw = tuple(ref["flip_input_hw"].tolist())
    model = official_weights(mamkpd.create_model(NAME, input_size=hw), ref)
    codec = build_codec(mamkpd.model_info(NAME).codec, hw)
    assert codec.flip_shift is False
    with torch.no_grad():
        averaged = predict_outputs(model, inputs[1], codec, DATASETS["coco"].flip_pairs)
    assert_close(averaged, ref["flip_averaged"])
    # the fixture's box is the crop itself (centre (W - 1) / 2, width W), so get_final_preds gives crop pixels
    keypoints, scores = codec.decode(ref["flip_averaged"])
    np.testing.assert_allclose(keypoints, ref["final_preds"], atol=2e-3)
    np.testing.assert_allclose(scores, ref["final_maxvals"][..., 0], rtol=1e-6)


def test_parameters_are_the_official_builds_and_the_published_count(ref):
    """43,720,943 as the official code builds it, the unused position embedding and window tables included
    (frozen: no gradient reaches them), within half a percent of the published 43.7M."""
    count = mamkpd.count_params(NAME)
    assert count == int(ref["params"])
    published = PUBLISHED_PARAMS[NAME].params_m
    assert abs(count / 1e6 - published) <= PARAMS_REL_BASELINE * published
    with torch.device("meta"):
        model = mamkpd.create_model(NAME)
    frozen = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"singleformer", "multi_position_embedding"}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count - trainable == 202_459 + 41_236 + 1_343  # position embedding, window tables, first-stage head


def test_cli_counts_the_official_build_per_person_crop(ref):
    """`mamkpd complexity --model i2rnet_hrformer_b`: the official build's count, one sample a person crop, and
    fvcore's multiply-adds with the window attention's products (no costly op of it goes uncounted: only shape
    arithmetic, elementwise ops, pooling and pads are left, as tests/test_models_contract.py's models)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["complexity", "--model", NAME, "--input-size", "64", "32", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)
    assert row["params"] == int(ref["params"]) and row["sample"] == "person crop" and row["counter"] == "fvcore"
    assert row["by_operator"]["matmul"] > 0 and row["by_operator"]["linear"] > 0 and row["batch"] == 1
    assert set(row["unsupported_ops"]) <= FREE_OPS, row["unsupported_ops"]


def test_lengths_and_input_size_are_checked(tiny_model):
    with pytest.raises(ValueError, match=r"lengths must be positive group sizes adding up to the batch \(3\)"):
        tiny_model(torch.zeros(3, 3, 64, 32), lengths=[2, 2])
    with pytest.raises(ValueError, match="multiples of 32"):
        mamkpd.create_model(NAME, input_size=(256, 200))
