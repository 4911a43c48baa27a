"""Speed and accuracy steps shared by the table reproductions (thin wrappers over mamkpd.harness)."""

from __future__ import annotations

import functools

from mamkpd.harness.jobs.fps_isolated import measure_models_isolated
from mamkpd.harness.jobs.reproduce import evaluate_recipe, recipe_for
from mamkpd.harness.measure.fps import REFERENCE_MODEL, FpsMeasurement, measure_model_fps
from mamkpd.harness.store.fps_records import record_fps
from mamkpd.harness.store.results import ResultsStore, default_store_path


@functools.cache
def reference_timing(batch: int, device: str, protocol: str) -> FpsMeasurement:
    # HRNet-W32 once per session and setting, in its own process like every timed model
    return measure_models_isolated([REFERENCE_MODEL], batch, "fp32", device, protocol)[0]


def time_row(model: str, *, batch: int, device: str, protocol: str, benchmark=None) -> list[dict]:
    """Time ``model`` in its own process, record it with its ratio to HRNet-W32; benchmark it too if asked."""
    reference = reference_timing(batch, device, protocol)
    measured = (
        reference if model == REFERENCE_MODEL else measure_models_isolated([model], batch, "fp32", device, protocol)[0]
    )
    rows = record_fps(ResultsStore(default_store_path()), measured, measured.result.median / reference.result.median)
    if benchmark is not None:
        benchmark.extra_info.update(
            device=device,
            batch=batch,
            sample=measured.sample,
            scan_backend=measured.scan_backend,
            label="CPU" if device == "cpu" else device,
        )
        # pytest-benchmark's own statistics of the same forward, for its comparison tooling
        benchmark.pedantic(lambda: measure_model_fps(model, batch, "fp32", device, "smoke"), rounds=1, iterations=1)
    return rows


def evaluate_row(table: str, row: str, model: str, data_root, checkpoint, record) -> list[dict]:
    """Evaluate a checkpoint with the row's recipe and record every metric the paper prints."""
    recipe = recipe_for(table, row)
    assert recipe.model == model
    return evaluate_recipe(recipe, data_root, checkpoint, record)
