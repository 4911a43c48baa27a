"""FPS protocol: the timing core, preset and backend refusals, serialisation and store rows (no speed asserted)."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys

import pytest
import torch

from mamkpd.engine import TrainConfig
from mamkpd.harness.jobs.fps_isolated import measure_models_isolated
from mamkpd.harness.jobs.launch import TimingJob, TrainJob, launch_command
from mamkpd.harness.measure.fps import FpsMeasurement, measure_model_fps, speed_ratios
from mamkpd.harness.measure.presets import PRESETS
from mamkpd.harness.measure.timing import TimingProtocol, time_callable
from mamkpd.harness.store.fps_records import record_fps
from mamkpd.harness.store.results import ResultsStore
from mamkpd.ops.selective_scan import auto_order, resolve_backend

TINY = TimingProtocol(
    name="tiny",
    round_seconds=0.01,
    timed_rounds=4,
    steady_window=1,
    min_warmup_rounds=2,
    max_warmup_rounds=4,
    max_warmup_seconds=2.0,
)


def test_time_callable_counts_calls_and_samples():
    calls = []
    result = time_callable(lambda: calls.append(1), sample_count=8, device="cpu", protocol=TINY)
    assert len(result.samples_per_s) == TINY.timed_rounds
    assert len(calls) == result.warmup_iterations + result.timed_iterations
    assert result.median > 0 and result.iqr >= 0 and not result.throttled
    assert result.clocks_before is None  # CPU: no GPU clocks to read


FAULTS = """
import torch
from mamkpd.harness.measure.timing import PROTOCOLS, time_callable
fresh = time_callable(lambda: torch.ones(16 << 20), sample_count=1, device="cpu", protocol=PROTOCOLS["smoke"])
reused = time_callable(lambda: None, sample_count=1, device="cpu", protocol=PROTOCOLS["smoke"])
print(fresh.page_faults_per_call, reused.page_faults_per_call)
"""


def test_time_callable_records_the_page_faults_of_a_call():
    """In a fresh process: whether a block is mapped afresh depends on the allocator's state, which a long test
    process (hundreds of models, sessions and threads before this test) has moved off glibc's defaults."""
    # 64 MiB, above glibc's largest mmap threshold: every call maps fresh pages and gives them back (16,384
    # faults a call on 4 KiB pages, 32 where the kernel backs it with 2 MiB huge pages)
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh, reused = map(float, done.stdout.split())
    assert fresh >= 30
    assert reused < 1


def test_time_callable_rejects_bad_sample_count():
    with pytest.raises(ValueError, match="sample_count"):
        time_callable(lambda: None, 0)


def test_cuda_only_presets_refused_on_cpu_with_the_cpu_list():
    with pytest.raises(ValueError, match="needs a CUDA device.*fp32"):
        measure_model_fps("mamkpd_s", preset="fp16", device="cpu")
    with pytest.raises(ValueError, match="unknown preset"):
        measure_model_fps("mamkpd_s", preset="int8")
    assert {"fp32", "fp16", "bf16", "fp32-cl", "fp16-cudnn-bench", "tf32", "compile"} <= set(PRESETS)


def test_reference_scan_backend_refused():
    with pytest.raises(ValueError, match="reference"):
        measure_model_fps("mamkpd_s", scan_backend="reference", input_size=(64, 48), protocol=TINY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_an_error():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        measure_model_fps("mamkpd_s", device="cuda")


def test_measurement_round_trip_and_store_rows(tmp_path):
    m = measure_model_fps("mamkpd_s", batch=2, input_size=(64, 48), protocol=TINY)
    assert m.scan_backend == "numba" and m.input_size == (64, 48) and m.result.sample_count == 2
    back = FpsMeasurement.from_dict(m.as_dict())
    assert back.result.samples_per_s == m.result.samples_per_s and back.preset == m.preset
    store = ResultsStore(tmp_path / "r.csv")
    rows = record_fps(store, m, ratio=speed_ratios([m], "mamkpd_s")["mamkpd_s"], reference="mamkpd_s")
    assert [r["metric"] for r in rows] == ["fps", "fps_ratio_to_mamkpd_s"]
    frame = store.read().frame
    # not at the paper's 256x192, so not keyed to Table 2
    assert set(frame["table"]) == {"fps"} and set(frame["status"]) == {"measured"}
    assert frame["scan_backend"].iloc[0] == "numba" and frame["batch_size"].iloc[0] == 2
    assert frame["sample"].iloc[0] == "person crop" and not math.isnan(frame["iqr"].iloc[0])
    assert back.result.allocator == "system" and set(frame["allocator"]) == {"system"}  # this process's setting


def test_ratio_needs_the_reference_in_the_run():
    with pytest.raises(ValueError, match="hrnet_w32 was not timed"):
        speed_ratios([])


def test_launch_runs_the_worker_module_never_the_cli():
    job = TimingJob("mamkpd_s", input_size=(64, 48))
    one = launch_command(job)
    assert one[1:4] == ["-m", "mamkpd.harness.jobs.worker", "time_model"] and "mamkpd.cli" not in one
    assert TimingJob.from_dict(json.loads(one[-1])) == job
    several = launch_command(TrainJob(TrainConfig(model="mamkpd_s")), processes=2)
    assert several[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert several[5:8] == ["-m", "mamkpd.harness.jobs.worker", "train"]


def test_isolated_timing_comes_back_from_a_child_process():
    allocator = "keep-freed" if platform.libc_ver()[0] == "glibc" else "system"
    (m,) = measure_models_isolated(["mamkpd_s"], batch=2, protocol="smoke", input_size=(64, 48), allocator=allocator)
    # The child records the backend that ran (the first available one in auto's CPU order), never "auto", and
    # the allocator setting it was asked for
    assert (m.model, m.batch, m.input_size, m.scan_backend, m.result.protocol, m.result.allocator) == (
        "mamkpd_s",
        2,
        (64, 48),
        resolve_backend("auto", "cpu").name,
        "smoke",
        allocator,
    )
    assert m.scan_backend in auto_order("cpu")
    with pytest.raises(RuntimeError, match="timing mamkpd_xxl in its own process failed.*unknown model"):
        measure_models_isolated(["mamkpd_xxl"], protocol="smoke")
