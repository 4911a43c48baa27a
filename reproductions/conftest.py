"""Shared machinery of the reproductions: paper rows as parameters, skip reasons, the results store.

Every measurement goes to the results store (``$MAMKPD_RESULTS``, default ``results/results.csv``)
through the ``record`` fixture, whatever the outcome; the assertion comes after the record. A row the
suite knows to differ from the paper is ``xfail(strict=True)`` with the reason in words
(``reproductions/discrepancies.py``), so a fix that makes it pass is noticed.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # discrepancies.py beside this file

from discrepancies import KNOWN_DISCREPANCIES  # noqa: E402

from mamkpd.harness.availability import checkpoint_status, cuda_status, dataset_status  # noqa: E402
from mamkpd.harness.results import ResultsStore, default_store_path  # noqa: E402
from mamkpd.paper import TABLES, load_table  # noqa: E402
from mamkpd.paper.tolerances import tolerance_for  # noqa: E402


def pytest_configure(config):
    for marker in (
        "gpu: needs a CUDA device",
        "data: needs a full data set and a checkpoint",
        "slow: takes more than a few seconds; still run by CI",
    ):
        config.addinivalue_line("markers", marker)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the GPU (name, driver, CUDA) and CPU model to pytest-benchmark's machine record."""
    from mamkpd.harness.machine import machine_info as suite_machine_info

    machine_info["mamkpd"] = suite_machine_info("cuda" if cuda_status().ok else "cpu")


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
            pytest.param(r.row, r.registry_name, value, marks=row_marks, id=f"{test or table}-{r.row}-{metric}")
        )
    return params


@pytest.fixture(scope="session")
def store() -> ResultsStore:
    return ResultsStore(default_store_path())


@pytest.fixture
def record(store):
    """``record(table=, row=, model=, metric=, paper=, measured=, tolerance=None, **protocol)`` → the stored row.

    With no ``tolerance`` the suite's policy (``mamkpd.paper.tolerances``) applies; the row's
    ``status`` says whether it reproduced.
    """

    def _record(
        *,
        table: str,
        row: str,
        model: str,
        metric: str,
        paper=None,
        measured=None,
        tolerance=None,
        tolerance_kind: str | None = None,
        **protocol,
    ):
        if tolerance is None and paper is not None and "status" not in protocol:
            tolerance, policy_kind = tolerance_for(table, metric, model)
            tolerance_kind = tolerance_kind or policy_kind
        return store.record(
            table=table,
            row=row,
            model=model,
            metric=metric,
            paper=paper,
            measured=measured,
            tolerance=tolerance,
            tolerance_kind=tolerance_kind or "abs",
            **protocol,
        )

    return _record


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
    from mamkpd.harness.complexity import measure_complexity

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


__all__ = [
    "paper_rows",
    "within",
    "describe",
    "complexity_of",
    "params_of",
    "require_cuda",
    "require_accuracy_inputs",
    "os",
]
