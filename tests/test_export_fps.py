"""`mamkpd fps --runtime onnxruntime`: the checked ONNX export timed under the suite's FPS protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamkpd.cli import main
from mamkpd.harness.store.results import ResultsStore

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fps_onnxruntime_recorded_with_provider(tmp_path):
    store = tmp_path / "results.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mamkpd.cli",
            "fps",
            "--model",
            "vitpose_s",
            "--runtime",
            "onnxruntime",
            "--input-size",
            "64",
            "48",
            "--protocol",
            "smoke",
            "--json",
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "onnxruntime" and out["provider"] == "CPUExecutionProvider"
    assert out["median_samples_per_s"] > 0 and out["input_size"] == [64, 48] and out["threads"] >= 1
    rows = ResultsStore(store).read().frame
    assert list(rows["runtime"]) == ["onnxruntime"] and list(rows["provider"]) == ["CPUExecutionProvider"]
    assert "ONNX opset" in rows["notes"].iloc[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--runtime", "onnxruntime", "--preset", "bf16"], "presets do not apply"),
        (["--runtime", "eager", "--preset", "compile"], "compiles the model"),
        (["--runtime", "compiled", "--preset", "bf16"], "needs a compiling preset"),
        (["--provider", "cuda"], "--provider applies to --runtime onnxruntime only"),
        (["--onnx-scan", "custom-op"], "--onnx-scan applies to --runtime onnxruntime only"),
        (["--runtime", "onnxruntime", "--provider", "tensorrt"], "'tensorrt' is not available"),
    ],
)
def test_runtime_option_errors(capsys, args, message):
    assert main(["fps", "--model", "vitpose_s", *args]) == 2
    assert message in capsys.readouterr().err
