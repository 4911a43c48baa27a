"""Table 2 (COCO val2017): params and GFLOPs of every implemented row, FPS on a GPU (as a ratio to
HRNet-W32 timed in the same run), CPU FPS as a labelled benchmark, accuracy where data and a checkpoint exist."""

from __future__ import annotations

import pytest
from complexity_rows import check_gflops, check_params
from conftest import describe, paper_rows, require_accuracy_inputs, require_cuda, within
from reproduce_helpers import evaluate_row, time_row

TABLE = "table2"


@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "params_m"))
def test_params(row, model, paper, record):
    check_params(TABLE, row, model, paper, record)


@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "gflops"))
def test_gflops(row, model, paper, record):
    check_gflops(TABLE, row, model, paper, record)


@pytest.mark.gpu
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "fps"))
@pytest.mark.parametrize("batch", [1, 64])
def test_fps_ratio_gpu(row, model, paper, batch, record):
    require_cuda()
    stored = time_row(model, batch=batch, device="cuda", protocol="standard")
    ratio = next(r for r in stored if r["metric"].startswith("fps_ratio"))
    assert within(ratio), describe(ratio)


@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "fps"))
def test_fps_cpu_benchmark(row, model, paper, benchmark, request):
    """CPU speed, labelled CPU: recorded and benchmarked, never judged against the paper's GPU figures."""
    if request.config.getoption("benchmark_disable"):
        pytest.skip("CPU timing is a benchmark: run with --benchmark-enable")
    stored = time_row(model, batch=1, device="cpu", protocol="quick", benchmark=benchmark)
    assert stored[0]["status"] == "measured" and float(stored[0]["measured_value"]) > 0


@pytest.mark.data
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "AP"))
def test_accuracy(row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(TABLE, row, model)
    rows = evaluate_row(TABLE, row, model, data_root, checkpoint, record)
    ap = next(r for r in rows if r["metric"] == "AP")
    assert within(ap), describe(ap)
