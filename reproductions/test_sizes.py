"""Params and GFLOPs of every paper row that prints them (Tables 1, 2, 4, 5), and of the Figure 3
models, whose sizes the paper does not print (measured and recorded, nothing to compare).

Test ids carry the table name: ``pytest reproductions -k table1`` selects Table 1's rows."""

from __future__ import annotations

import pytest

from mamkpd.paper import load_table

from .support import complexity_of, describe, paper_rows, params_of, within


def rows(tables: tuple[str, ...], metric: str) -> list:
    """(table, row, model, paper value) per paper row, then the Figure 3 models with no paper value."""
    params = [
        pytest.param(table, *p.values, marks=p.marks, id=p.id) for table in tables for p in paper_rows(table, metric)
    ]
    params += [
        pytest.param("fig3", r.row, r.registry_name, None, id=f"fig3-{r.row}-{metric}")
        for r in load_table("fig3").itertuples()
        if r.registry_name
    ]
    return params


@pytest.mark.parametrize("table, row, model, paper", rows(("table1", "table2", "table4", "table5"), "params_m"))
def test_params(table, row, model, paper, record):
    stored = record(
        table=table,
        row=row,
        model=model,
        metric="params_m",
        paper=paper,
        measured=params_of(model) / 1e6,
        notes="exact count of parameters",
    )
    if paper is not None:
        assert within(stored), describe(stored)


@pytest.mark.slow
@pytest.mark.parametrize("table, row, model, paper", rows(("table1", "table2", "table5"), "gflops"))
def test_gflops(table, row, model, paper, record):
    c = complexity_of(model)
    stored = record(
        table=table,
        row=row,
        model=model,
        metric="gflops",
        paper=paper,
        measured=c.gflops,
        flops_convention=f"{c.flops_convention} ({c.counter})",
        input_size=c.input_size,
        batch_size=c.batch,
        scan_backend=c.scan_backend or "",
    )
    if paper is not None:
        assert within(stored), describe(stored)
