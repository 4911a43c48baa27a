"""Speed of Table 2's rows: FPS on a GPU as a ratio to HRNet-W32 timed in the same run (the paper's
figures come from different GPUs), and CPU FPS as a labelled benchmark, never judged against them.
Test ids carry the table name (``-k table2``)."""

from __future__ import annotations

import pytest
from conftest import describe, paper_rows, require_cuda, within
from reproduce_helpers import time_row

TABLE = "table2"


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
