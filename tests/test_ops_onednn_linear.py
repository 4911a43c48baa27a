"""Linear layers on oneDNN (the fp32-onednn timing preset): the same outputs as PyTorch's linear, the oneDNN op
really runs where it should, and nowhere a gradient, a trace or another device needs the plain op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mamkpd.harness.measure.presets import PRESETS, check_preset_device
from mamkpd.models import create_model
from mamkpd.ops import OneDNNLinear, onednn_linear_unavailable

pytestmark = pytest.mark.skipif(onednn_linear_unavailable() is not None, reason="this PyTorch build has no oneDNN")
REPO = Path(__file__).resolve().parents[1]


class OpsRun(TorchDispatchMode):
    """The aten/mkldnn ops that ran (their overload packets' names)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _ops(fn) -> list[str]:
    with OpsRun() as seen:
        fn()
    return seen.names


def test_linear_runs_on_onednn_at_inference_with_the_same_outputs():
    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(96, 40)
    x = torch.randn(2, 5, 7, 96, generator=g).permute(0, 2, 1, 3)  # 4-d and not contiguous, as SS2D's are
    want = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode(), OneDNNLinear():
        names = _ops(lambda: layer(x))
        got = layer(x)
    assert "_linear_pointwise" in names and "addmm" not in names and "mm" not in names
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradients_traces_and_other_dtypes_take_the_plain_op():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with OneDNNLinear():
        assert "_linear_pointwise" not in _ops(lambda: layer(x))  # the weight needs a gradient
        layer(x).sum().backward()
        assert layer.weight.grad is not None
        with torch.no_grad():
            assert "_linear_pointwise" not in _ops(lambda: layer.double()(x.double()))
            graph = torch.jit.trace(layer.float(), x).graph  # fvcore's counts read such a trace
    assert "aten::linear" in str(graph) and "mkldnn" not in str(graph)


def test_mamkpd_under_the_mode_matches_plain_eager():
    model = create_model("mamkpd_s", depths=[1, 1, 1], dims=[32, 64, 128]).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.inference_mode():
        want = model(x)
        with OneDNNLinear():
            names = _ops(lambda: model(x))
            got = model(x)
    assert names.count("_linear_pointwise") >= 3 * 3  # in_proj, x_proj and out_proj of each block at least
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_preset_is_for_the_cpu():
    preset = PRESETS["fp32-onednn"]
    check_preset_device(preset, "cpu")
    with pytest.raises(ValueError, match="is for the CPU"):
        check_preset_device(preset, "cuda")


def test_fps_cli_times_with_the_preset_and_records_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", "fps", "--model", "mamkpd_s", "--input-size", "64", "48",
         "--protocol", "smoke", "--preset", "fp32-onednn", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["preset"]["name"] == "fp32-onednn" and out["preset"]["onednn_linear"] is True
    assert out["runtime"] == "eager (Linear on oneDNN)"  # what the store's runtime column says
