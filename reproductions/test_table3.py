"""Table 3 (MPII val, PCKh@0.5): every implemented row's per-joint PCKh and mean, where MPII and a
checkpoint are present; the params of the same models are Table 2's (checked there)."""

from __future__ import annotations

import pytest
from conftest import describe, paper_rows, require_accuracy_inputs, within
from reproduce_helpers import evaluate_row

TABLE = "table3"


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "mean"))
def test_pckh(row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(TABLE, row, model)
    rows = evaluate_row(TABLE, row, model, data_root, checkpoint, record)
    mean = next(r for r in rows if r["metric"] == "mean")
    assert within(mean), describe(mean)
