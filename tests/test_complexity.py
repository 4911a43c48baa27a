"""Params and GFLOPs: exact params, the scan counted by Mamba's formula, nothing costly left uncounted."""

import json
import subprocess
import sys

import pytest

import mamkpd
from mamkpd.harness.complexity import FREE_OPS, measure_complexity, measure_model
from mamkpd.models.mamkpd import VARIANTS
from mamkpd.ops import selective_scan_flops


def expected_scan_flops(model, input_size):
    """Sum of 9*B*L*D*N + B*D*L over every SS2D, from the config alone."""
    total, (h, w) = 0, input_size
    for i, stage in enumerate(model.stages):
        stride = 2 ** (i + 2)
        for block in stage.blocks:
            ss2d = block.op
            total += selective_scan_flops(1, 4 * ss2d.d_inner, (h // stride) * (w // stride), ss2d.d_state)
    return total


@pytest.mark.parametrize("name", ["mamkpd_b", "mamkpd_t5b"])
def test_counts_params_exactly_and_the_scan_by_formula(name):
    model = mamkpd.create_model(name)
    c = measure_model(model, (256, 192), name=name)
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.by_operator["selective_scan"] == expected_scan_flops(model, (256, 192))
    assert c.flops == int(sum(c.by_operator.values()))
    assert c.flops_convention == "MAC" and c.scan_backend == "numba"  # what auto resolves to on a CPU


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
    model = mamkpd.create_model("mamkpd_b")
    assert out["model"] == "mamkpd_b" and out["params"] == sum(p.numel() for p in model.parameters())
    assert out["flops_convention"] == "MAC" and out["input_size"] == [256, 192]
    assert out["gflops"] == pytest.approx(out["flops"] / 1e9)
    assert isinstance(out["unsupported_ops"], dict) and out["scan_backend"] == "numba"


def test_cli_unknown_model_lists_names():
    res = cli("--model", "mamkpd_xxl")
    assert res.returncode != 0
    assert "unknown model 'mamkpd_xxl'" in res.stderr and "mamkpd_b" in res.stderr


def test_cli_bad_input_size():
    res = cli("--model", "mamkpd_b", "--input-size", "250", "192")
    assert res.returncode != 0 and "divisible by 16" in res.stderr


@pytest.mark.slow
def test_cli_all_lists_every_registered_model():
    res = cli("--model", "all", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == mamkpd.list_models()
    assert all(r["params"] > 0 and r["gflops"] > 0 for r in rows)
