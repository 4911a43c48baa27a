"""Figure 1 (COCO AP against parameters, circle size = parameters): the figure's claim is an ordering
by size; the measured sizes must order the models as the paper's do, and the figure is drawn from the store."""

from __future__ import annotations

import pytest

from mamkpd.paper import compared_model, load_table

from .support import paper_rows, params_of


def _sizes() -> list[tuple[str, str, float, float]]:
    t2 = load_table("table2")
    rows = t2[(t2["registry_name"] != "") & t2["params_m"].notna() & t2["AP"].notna()]
    models = [(r.row, compared_model(r, "params_m"), r.params_m) for r in rows.itertuples()]
    return [(row, model, printed, params_of(model) / 1e6) for row, model, printed in models]


@pytest.mark.parametrize("row, model, paper", paper_rows("table2", "params_m", test="fig1"))
def test_measured_size_rank_matches_paper(row, model, paper, record):
    """Each model keeps its rank among the Figure 1 models when sizes are measured instead of printed."""
    sizes = _sizes()
    paper_rank = sorted(p for _, _, p, _ in sizes).index(paper)
    ours = params_of(model) / 1e6
    measured_rank = sorted(m for _, _, _, m in sizes).index(ours)
    stored = record(
        table="fig1",
        row=row,
        model=model,
        metric="params_rank",
        paper=float(paper_rank),
        measured=float(measured_rank),
        tolerance=0.0,
        tolerance_kind="abs",
        notes="rank by size among the Table 2 rows the suite implements (0 = smallest)",
    )
    assert stored["status"] == "reproduced", (
        f"{row}: rank {measured_rank} by measured size ({ours:.2f}M), {paper_rank} by the paper's ({paper}M)"
    )


def test_figure_is_drawn_from_measurements(tmp_path):
    import pandas as pd

    from mamkpd.harness.store.results import COLUMNS
    from mamkpd.report.compare import compare_table
    from mamkpd.report.plots import plot_fig1

    store = pd.DataFrame(
        [
            {c: "" for c in COLUMNS}
            | {
                "table": "table2",
                "row": row,
                "model": model,
                "metric": "params_m",
                "measured_value": measured,
                "status": "measured",
                "timestamp": "t",
            }
            for row, model, _, measured in _sizes()
        ]
    )
    store["measured_value"] = store["measured_value"].astype(float)
    path = plot_fig1(compare_table("table2", store), tmp_path / "fig1.png")
    assert path.stat().st_size > 10_000
