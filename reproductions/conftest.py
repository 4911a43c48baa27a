"""Shared fixtures of the reproductions: the results store and the ``record`` fixture.

Every measurement goes to the results store (``$MAMKPD_RESULTS``, default ``results/results.csv``)
through ``record``, whatever the outcome; the assertion comes after the record. A row the suite knows
to differ from the paper is ``xfail(strict=True)`` with the reason in words
(``reproductions/discrepancies.py``, applied by ``support.paper_rows``), so a fix that makes it pass is
noticed. Markers (``gpu``, ``data``, ``slow``) are declared once, in pyproject.toml.
"""

from __future__ import annotations

import pytest

from mamkpd.harness.jobs.availability import cuda_status
from mamkpd.harness.store.results import ResultsStore, default_store_path
from mamkpd.models import model_info
from mamkpd.paper.tolerances import tolerance_for


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the GPU (name, driver, CUDA) and CPU model to pytest-benchmark's machine record."""
    from mamkpd.harness.measure.machine import machine_info as suite_machine_info

    machine_info["mamkpd"] = suite_machine_info("cuda" if cuda_status().ok else "cpu")


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
            tolerance, policy_kind = tolerance_for(table, metric, model_info(model).tolerance_class)
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
