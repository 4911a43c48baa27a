"""Accuracy of every implemented row of Tables 2-5 and Figure 3, where the data set and a checkpoint
(trained by ``mamkpd reproduce`` or official) are present; otherwise skipped with the exact reason.
Every metric the paper prints for the row is recorded; the headline one is judged."""

from __future__ import annotations

import pytest

from .reproduce_helpers import evaluate_row
from .support import describe, paper_rows, require_accuracy_inputs, within

# the metric each table is judged on: COCO/AP-10K AP, MPII PCKh Mean
HEADLINE = {"table2": "AP", "table3": "mean", "table4": "AP", "table5": "mean", "fig3": "mean"}


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize(
    "table, row, model, paper",
    [
        pytest.param(table, *p.values, marks=p.marks, id=p.id)
        for table, metric in HEADLINE.items()
        for p in paper_rows(table, metric)
    ],
)
def test_accuracy(table, row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(table, row, model)
    measured = evaluate_row(table, row, model, data_root, checkpoint, record)
    headline = next(r for r in measured if r["metric"] == HEADLINE[table])
    assert within(headline), describe(headline)
