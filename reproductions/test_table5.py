"""Table 5: the architecture ablations (blocks and dims) — size always, MPII Mean where data and a
checkpoint exist."""

import pytest
from complexity_rows import check_gflops, check_params
from conftest import describe, paper_rows, require_accuracy_inputs, within
from reproduce_helpers import evaluate_row

TABLE = "table5"


@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "params_m"))
def test_params(row, model, paper, record):
    check_params(TABLE, row, model, paper, record)


@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "gflops"))
def test_gflops(row, model, paper, record):
    check_gflops(TABLE, row, model, paper, record)


@pytest.mark.data
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "mean"))
def test_mpii_mean(row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(TABLE, row, model)
    rows = evaluate_row(TABLE, row, model, data_root, checkpoint, record)
    mean = next(r for r in rows if r["metric"] == "mean")
    assert within(mean), describe(mean)
