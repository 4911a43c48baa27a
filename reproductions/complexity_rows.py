"""Params and GFLOPs checks shared by every table that prints them (Tables 1, 2, 4, 5, Figure 3)."""

from __future__ import annotations

from conftest import complexity_of, describe, params_of, within


def check_params(table: str, row: str, model: str, paper, record) -> None:
    stored = record(table=table, row=row, model=model, metric="params_m", paper=paper,
                    measured=params_of(model) / 1e6, notes="exact count of parameters")
    if paper is not None:
        assert within(stored), describe(stored)


def check_gflops(table: str, row: str, model: str, paper, record) -> None:
    c = complexity_of(model)
    stored = record(table=table, row=row, model=model, metric="gflops", paper=paper, measured=c.gflops,
                    flops_convention=f"{c.flops_convention} ({c.counter})", input_size=c.input_size,
                    batch_size=c.batch, scan_backend=c.scan_backend or "")
    if paper is not None:
        assert within(stored), describe(stored)
