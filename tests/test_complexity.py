"""Params and GFLOPs: exact params, the scan counted by Mamba's formula, nothing costly left uncounted."""

import json
import subprocess
import sys

import pytest
from torch import nn
from worker_groups import MODEL_COUNTS

import mamkpd
from mamkpd.harness.measure.complexity import FREE_OPS, measure_complexity, measure_model
from mamkpd.models.mamkpd import VARIANTS
from mamkpd.ops import selective_scan_flops
from mamkpd.paper.published import PUBLISHED_PARAMS
from mamkpd.paper.tolerances import PARAMS_REL_BASELINE, PARAMS_REL_MAMKPD


def expected_scan_flops(model, input_size):
    """Sum of 9*B*L*D*N + B*D*L over every SS2D, from the config alone."""
    total, (h, w) = 0, input_size
    for i, stage in enumerate(model.stages):
        stride = 2 ** (i + 2)
        for block in stage.blocks:
            ss2d = block.op
            total += selective_scan_flops(1, 4 * ss2d.d_inner, (h // stride) * (w // stride), ss2d.d_state)
    return total


class ConvTokens(nn.Module):
    """A 3x3 conv then a linear layer over its H*W tokens: params and MACs are easy to count by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(2).transpose(1, 2))


def test_counts_a_small_module_by_hand():
    c = measure_model(ConvTokens(), (4, 6), name="conv_tokens")
    assert c.params == 8 * 3 * 3 * 3 + (8 * 5 + 5)
    # one multiply-add per weight per output position: conv 8 x 27 at 4 x 6, linear 8 x 5 per token
    assert c.flops == 8 * 27 * 4 * 6 + 4 * 6 * 8 * 5
    assert c.gflops == pytest.approx(c.flops / 1e9) and c.flops_convention == "MAC"


@pytest.mark.parametrize("name", ["mamkpd_b", "mamkpd_t5b"])
def test_counts_the_scan_by_formula(name):
    model = mamkpd.create_model(name)
    c = measure_model(model, (256, 192), name=name)
    assert c.by_operator["selective_scan"] == expected_scan_flops(model, (256, 192))
    assert c.flops == int(sum(c.by_operator.values()))
    assert c.flops_convention == "MAC" and c.scan_backend == "numba"  # what auto resolves to on a CPU


@MODEL_COUNTS
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_no_costly_op_goes_uncounted(name):
    c = measure_complexity(name)
    assert c.uncounted_non_free == {}, f"{name}: fvcore could not count {c.uncounted_non_free}"
    assert set(c.unsupported_ops) <= FREE_OPS


def test_reference_backend_is_refused():
    model = mamkpd.create_model("mamkpd_t5a", scan_backend="reference")
    with pytest.raises(ValueError, match="reference"):
        measure_model(model, (256, 192))


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mamkpd", "complexity", *args], capture_output=True, text=True, timeout=600
    )


def test_cli_json():
    res = cli("--model", "mamkpd_b", "--input-size", "256", "192", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # the paper's 7.1M for MamKPD-B, within the suite's tolerance for it
    assert out["model"] == "mamkpd_b" and abs(out["params"] / 1e6 - 7.1) <= PARAMS_REL_MAMKPD * 7.1
    assert out["flops_convention"] == "MAC" and out["input_size"] == [256, 192]
    assert out["gflops"] == pytest.approx(out["flops"] / 1e9)
    assert isinstance(out["unsupported_ops"], dict) and out["scan_backend"] == "numba"


def test_cli_unknown_model_lists_names():
    res = cli("--model", "mamkpd_xxl")
    assert res.returncode != 0
    assert "unknown model 'mamkpd_xxl'" in res.stderr and "mamkpd_b" in res.stderr


def test_cli_bad_input_size():
    res = cli("--model", "mamkpd_b", "--input-size", "250", "192")
    assert res.returncode != 0 and "multiples of 16" in res.stderr


@MODEL_COUNTS
@pytest.mark.slow
def test_cli_all_lists_every_registered_model():
    res = cli("--model", "all", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == mamkpd.list_models()
    assert all(r["gflops"] > 0 for r in rows)
    # the baselines' counts against the ones their authors (or MMPose's configs) publish
    published = {r["model"]: r["params"] / 1e6 for r in rows if r["model"] in PUBLISHED_PARAMS}
    assert len(published) == len(PUBLISHED_PARAMS)
    for name, params_m in published.items():
        assert abs(params_m - PUBLISHED_PARAMS[name].params_m) <= PARAMS_REL_BASELINE * PUBLISHED_PARAMS[name].params_m
