"""Figure 3: Stem and CMM ablations on MPII. The paper prints no sizes for them: the suite measures
and records params and GFLOPs beside the MPII Mean it can compare (w/o-Stem, w/o-CMM from the text)."""

import pytest
from complexity_rows import check_gflops, check_params
from conftest import describe, paper_rows, require_accuracy_inputs, within
from reproduce_helpers import evaluate_row

from mamkpd.paper import load_table

TABLE = "fig3"
ROWS = [(r.row, r.registry_name) for r in load_table(TABLE).itertuples() if r.registry_name]


@pytest.mark.parametrize("row, model", ROWS)
def test_params_measured(row, model, record):
    check_params(TABLE, row, model, None, record)


@pytest.mark.slow
@pytest.mark.parametrize("row, model", ROWS)
def test_gflops_measured(row, model, record):
    check_gflops(TABLE, row, model, None, record)


@pytest.mark.data
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "mean"))
def test_mpii_mean(row, model, paper, record):
    data_root, checkpoint = require_accuracy_inputs(TABLE, row, model)
    rows = evaluate_row(TABLE, row, model, data_root, checkpoint, record)
    mean = next(r for r in rows if r["metric"] == "mean")
    assert within(mean), describe(mean)
