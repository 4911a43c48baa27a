"""Table 4 (AP-10K test): params of every implemented row; AP where AP-10K and a checkpoint are present."""

from __future__ import annotations

import pytest
from complexity_rows import check_params
from conftest import describe, paper_rows, require_accuracy_inputs, within
from reproduce_helpers import evaluate_row

TABLE = "table4"


@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "params_m"))
def test_params(row, model, paper, record):
    check_params(TABLE, row, model, paper, record)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "AP"))
def test_ap(row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(TABLE, row, model)
    rows = evaluate_row(TABLE, row, model, data_root, checkpoint, record)
    ap = next(r for r in rows if r["metric"] == "AP")
    assert within(ap), describe(ap)
