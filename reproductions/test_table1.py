"""Table 1: parameters and GFLOPs of MamKPD-S/B/L."""

import pytest
from complexity_rows import check_gflops, check_params
from conftest import paper_rows

TABLE = "table1"


@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "params_m"))
def test_params(row, model, paper, record):
    check_params(TABLE, row, model, paper, record)


@pytest.mark.slow
@pytest.mark.parametrize("row, model, paper", paper_rows(TABLE, "gflops"))
def test_gflops(row, model, paper, record):
    check_gflops(TABLE, row, model, paper, record)
