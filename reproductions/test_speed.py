"""Speed of Table 2's rows: FPS on a GPU as a ratio to HRNet-W32 timed in the same run (the paper's
figures come from different GPUs), and CPU FPS as a labelled benchmark, never judged against them.
Test ids carry the table name (``-k table2``)."""

from __future__ import annotations

import pytest

from mamkpd.harness.measure.fps import REFERENCE_MODEL
from mamkpd.harness.measure.timing import PROTOCOLS

from .reproduce_helpers import reference_timing, time_row
from .support import describe, paper_rows, require_cuda, within

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
def test_fps_cpu_benchmark(row, model, paper, benchmark):
    """CPU speed, labelled CPU: recorded and benchmarked, never judged against the paper's GPU figures."""
    if benchmark.disabled:  # pyproject's addopts disable benchmarks; --benchmark-enable turns them back on
        pytest.skip("CPU timing is a benchmark: run with --benchmark-enable")
    fps, ratio = time_row(model, batch=1, device="cpu", protocol="quick", benchmark=benchmark)
    # recorded under the quick protocol, on the CPU, and never judged against the paper's GPU figures
    assert (fps["metric"], fps["device"], fps["unit"], fps["status"]) == ("fps", "cpu", "samples/s", "measured")
    assert fps["timed_rounds"] == str(PROTOCOLS["quick"].timed_rounds) and "CPU" in fps["status_reason"]
    assert (ratio["metric"], ratio["status"]) == (f"fps_ratio_to_{REFERENCE_MODEL}", "measured")
    # the ratio is this model's median over HRNet-W32's, timed in the same session
    reference = reference_timing(1, "cpu", "quick").result.median
    assert float(ratio["measured_value"]) == pytest.approx(float(fps["measured_value"]) / reference)
