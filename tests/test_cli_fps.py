"""`mamkpd fps` as a user runs it: a subprocess on a small model."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mamkpd.harness.store.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def _mamkpd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )


def test_fps_json_and_store(tmp_path):
    store = tmp_path / "results.csv"
    proc = _mamkpd(
        "fps", "--model", "mamkpd_s", "--input-size", "64", "48", "--protocol", "smoke", "--json", "--store", str(store)
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model"] == "mamkpd_s" and out["median_samples_per_s"] > 0 and out["scan_backend"] == "numba"
    assert out["preset"]["name"] == "fp32" and out["input_size"] == [64, 48]
    assert out["result"]["allocator"] == "system"  # glibc's defaults unless asked otherwise
    assert "mamkpd_s" in store.read_text()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep-freed sets glibc's malloc; this C library is not")
def test_fps_times_under_the_allocator_asked_for_and_records_it(tmp_path):
    store = tmp_path / "results.csv"
    args = ("fps", "--model", "mamkpd_s", "--input-size", "64", "48", "--protocol", "smoke", "--allocator")
    proc = _mamkpd(*args, "keep-freed", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "allocator keep-freed" in proc.stdout.splitlines()[-1]
    rows = ResultsStore(store).read().frame
    assert set(rows["allocator"]) == {"keep-freed"} and set(rows["metric"]) == {"fps"}
    proc = _mamkpd(*args, "jemalloc")
    assert proc.returncode == 2 and "--allocator" in proc.stderr and "Traceback" not in proc.stderr


def test_fps_refuses_gpu_preset_on_cpu_in_one_line():
    proc = _mamkpd("fps", "--model", "mamkpd_s", "--preset", "fp16", "--device", "cpu")
    assert proc.returncode == 2
    assert "needs a CUDA device" in proc.stderr and "Traceback" not in proc.stderr


def test_fps_times_a_model_with_two_outputs():
    """RTMPose's forward gives SimCC's (x, y) vectors: timed like any registered model."""
    proc = _mamkpd("fps", "--model", "rtmpose_t", "--input-size", "64", "64", "--protocol", "smoke", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model"] == "rtmpose_t" and out["median_samples_per_s"] > 0 and out["scan_backend"] == ""
    assert out["sample"] == "person crop" and out["input_size"] == [64, 64]
