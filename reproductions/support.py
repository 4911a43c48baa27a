"""Helpers of the reproductions: paper rows as test parameters, skip reasons in words, sizes counted once."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

from mamkpd.harness.jobs.availability import checkpoint_status, cuda_status, dataset_status
from mamkpd.paper import TABLES, compared_model, load_table

from .discrepancies import KNOWN_DISCREPANCIES

__all__ = [
    "paper_rows",
    "within",
    "describe",
    "complexity_of",
    "params_of",
    "require_cuda",
    "require_accuracy_inputs",
]


def paper_rows(table: str, metric: str, *, implemented_only: bool = True, marks=(), test: str | None = None) -> list:
    """``pytest.param`` per paper row of ``table`` that prints ``metric`` (and has a registered model),
    id'd by the row key, xfail(strict=True) where the suite knows the row differs. ``test`` names
    what is checked when it is not the table's own cell (e.g. "fig1"), and keys the known discrepancies."""
    params = []
    for r in load_table(table).itertuples():
        value = getattr(r, metric, math.nan)
        if (implemented_only and not r.registry_name) or (isinstance(value, float) and math.isnan(value)):
            continue
        row_marks = list(marks)
        reason = KNOWN_DISCREPANCIES.get((test or table, r.row, metric))
        if reason:
            row_marks.append(pytest.mark.xfail(strict=True, reason=reason))
        params.append(
            # the model the paper table says this cell is compared with (a variant where it printed another's figure)
            pytest.param(
                r.row, compared_model(r, metric), value, marks=row_marks, id=f"{test or table}-{r.row}-{metric}"
            )
        )
    return params


def within(row: dict) -> bool:
    """Whether a stored row reproduced the paper (what the tests assert after recording)."""
    return row["status"] == "reproduced"


def describe(row: dict) -> str:
    return (
        f"{row['table']} {row['row']} {row['metric']}: paper {row['paper_value']}, measured "
        f"{row['measured_value']} (tolerance {row['tolerance']} {row['tolerance_kind']})"
    )


@functools.cache
def complexity_of(model: str):
    """fvcore params/GFLOPs of a registered model at its own input size, counted once per session."""
    from mamkpd.harness.measure.complexity import measure_complexity

    return measure_complexity(model)


@functools.cache
def params_of(model: str) -> int:
    """Exact parameter count, built on the meta device (no weights allocated, no forward)."""
    from mamkpd import count_params

    return count_params(model)


def require_cuda() -> None:
    status = cuda_status()
    if not status.ok:
        pytest.skip(status.reason)


def require_accuracy_inputs(table: str, row: str, model: str) -> tuple[Path, Path]:
    """(data root, checkpoint) for an accuracy row, or a skip with the exact reason."""
    spec = TABLES[table]
    data = dataset_status(spec.dataset, None, spec.split)
    if not data.ok:
        pytest.skip(data.reason)
    checkpoint = checkpoint_status(model, spec.dataset, table, row)
    if not checkpoint.ok:
        pytest.skip(checkpoint.reason)
    return data.path, checkpoint.path
