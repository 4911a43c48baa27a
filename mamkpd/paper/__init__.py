"""The paper's printed values, stored as data (one CSV per table) and only ever compared with.

Each CSV holds the rows exactly as the paper prints them: ``row`` is a unique key within the table,
``method`` the printed name, empty cells are the paper's "-", ``registry_name`` names the registered
model that reproduces the row (empty where the suite does not implement the method), ``notes`` says
what the paper leaves implicit (which GPU timed it, which counter counted it, printing errors).
``compare_with`` (optional) names, per metric, the registered model a cell is compared with where it is
not ``registry_name``: ``params_m=vitpose_b_simple`` where the printed count is the simple decoder's
(the suite's finding), while the row's accuracy belongs to ``registry_name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pandas as pd

__all__ = ["TableSpec", "TABLES", "compared_model", "load_table", "table_names"]


@dataclass(frozen=True)
class TableSpec:
    """What a paper table measures: data set, split and the columns holding measured quantities."""

    name: str
    title: str
    dataset: str  # "" where the table is about model size only
    split: str  # one of mamkpd.data.SPLITS ("val" is COCO val2017), "" with no data set
    accuracy_columns: tuple[str, ...]
    complexity_columns: tuple[str, ...]
    speed_columns: tuple[str, ...] = ()


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("table1", "Table 1. Model specifications of MamKPD variants", "", "", (), ("params_m", "gflops")),
        TableSpec(
            "table2",
            "Table 2. Comparisons on the COCO val2017 set",
            "coco",
            "val",
            ("AP", "AP50", "AP75", "APM", "APL", "AR"),
            ("params_m", "gflops"),
            ("fps",),
        ),
        TableSpec(
            "table3",
            "Table 3. Comparisons on the MPII validation set (PCKh@0.5)",
            "mpii",
            "val",
            ("head", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "mean"),
            (),
        ),
        TableSpec(
            "table4",
            "Table 4. Comparisons on the AP-10K test set",
            "ap10k",
            "test",
            ("AP", "AP50", "AP75", "APM", "APL"),
            ("params_m",),
        ),
        TableSpec(
            "table5",
            "Table 5. Ablations of the MamKPD architecture (MPII val)",
            "mpii",
            "val",
            ("mean",),
            ("params_m", "gflops"),
        ),
        # the paper prints no size for the Figure 3 models; the suite measures it beside their accuracy
        TableSpec(
            "fig3",
            "Figure 3. Ablations of Stem and CMM (MPII val Mean)",
            "mpii",
            "val",
            ("mean",),
            ("params_m", "gflops"),
        ),
    )
}

# columns that are text even when every cell looks like a number
_TEXT_COLUMNS = (
    "row",
    "method",
    "registry_name",
    "notes",
    "section",
    "ref",
    "blocks",
    "dims",
    "backbone",
    "pretrain",
    "stem",
    "known",
    "reproduced_by_authors",
    "compare_with",
)


def compared_model(paper_row, metric: str) -> str:
    """The registered model the ``metric`` cell of a paper row (a row of :func:`load_table`, as a Series or
    a namedtuple) is compared with: its ``compare_with`` entry for that metric, else its ``registry_name``."""
    get = paper_row.get if hasattr(paper_row, "get") else lambda key, default: getattr(paper_row, key, default)
    for entry in str(get("compare_with", "") or "").split(";"):
        key, sep, model = entry.partition("=")
        if sep and key.strip() == metric:
            return model.strip()
    return get("registry_name", "")


def table_names() -> list[str]:
    """Names accepted by :func:`load_table`, in the paper's order."""
    return list(TABLES)


def load_table(name: str) -> pd.DataFrame:
    """Return the paper's values of table ``name`` (``table1`` … ``table5``, ``fig3``).

    Numeric columns are floats with NaN where the paper prints "-"; text columns are strings with
    "" for empty cells.
    """
    if name not in TABLES:
        raise ValueError(f"unknown paper table {name!r}; known: {', '.join(TABLES)}")
    source = resources.files(__package__).joinpath(f"{name}.csv")
    with source.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
    for column in frame.columns:
        if column in _TEXT_COLUMNS:
            frame[column] = frame[column].fillna("")
        else:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    if frame["row"].duplicated().any():
        raise ValueError(f"paper table {name}: duplicate row keys {frame['row'][frame['row'].duplicated()].tolist()}")
    return frame
