"""RTMPose beside MamKPD and HRNet-W32, from the results store: a comparison the paper does not make.

The paper cites RTMPose as a representative real-time method but prints no figure of it. Its models are
found in the registry by family; a store row counts whichever table it was recorded under (``mamkpd fps
--store`` keys a model without a paper row to the ``fps`` table), default reading only.
"""

from __future__ import annotations

import math

import pandas as pd

from ..harness.store.results import STATUS_NOT_RUN
from ..models import list_models, model_info
from ..paper import TABLES, load_table
from ..paper.published import PUBLISHED_PARAMS
from .compare import RATIO_METRIC, pick_measurement
from .markdown import md_table

__all__ = ["RTMPOSE_FAMILY", "REFERENCE_MODELS", "rtmpose_models", "rtmpose_section"]

RTMPOSE_FAMILY = "rtmpose"
REFERENCE_MODELS = ("mamkpd_s", "mamkpd_b", "mamkpd_l", "hrnet_w32")  # what RTMPose is set beside


def rtmpose_models() -> list[str]:
    """The registered RTMPose models, smallest first (by their published size)."""
    models = [m for m in list_models() if model_info(m).family == RTMPOSE_FAMILY]
    return sorted(models, key=lambda m: (PUBLISHED_PARAMS[m].params_m if m in PUBLISHED_PARAMS else math.inf, m))


def _measured(store: pd.DataFrame, model: str, metric: str) -> pd.Series | None:
    rows = store[
        (store["model"] == model)
        & (store["metric"] == metric)
        & (store["reading"].fillna("") == "")
        & (store["status"] != STATUS_NOT_RUN)
        & store["measured_value"].notna()
    ]
    return pick_measurement(rows, metric) if len(rows) else None


def _printed(model: str) -> tuple[float | None, float | None, str]:
    """The model's own published (#params, GFLOPs) and where they are printed: Table 1 for MamKPD, Table 2 for
    HRNet-W32, the published counts (the RTMPose README) for the rest."""
    for table in ("table1", "table2"):
        rows = load_table(table)
        rows = rows[rows["registry_name"] == model]
        if len(rows):
            return (
                float(rows["params_m"].iloc[0]),
                float(rows["gflops"].iloc[0]),
                "paper " + TABLES[table].title.split(".")[0],
            )
    published = PUBLISHED_PARAMS.get(model)
    if published is None:
        return None, None, ""
    return published.params_m, published.gflops, published.source.split(",")[0]


def _num(x: float | None, digits: str = ".3g") -> str:
    return "—" if x is None or pd.isna(x) else format(x, digits)


def rtmpose_section(store: pd.DataFrame) -> str:
    """Markdown: RTMPose-t/s/m/l's #params, GFLOPs and speed ratios beside MamKPD-S/B/L and HRNet-W32, and what
    the store lacks."""
    models = rtmpose_models()
    if not models:
        return "No RTMPose model is registered.\n"
    rows, missing = [], []
    for model in [*models, *REFERENCE_MODELS]:
        params, gflops = _measured(store, model, "params_m"), _measured(store, model, "gflops")
        fps = _measured(store, model, "fps")
        ratio = None
        if fps is not None:
            ratios = store[
                (store["model"] == model)
                & (store["metric"] == RATIO_METRIC)
                & (store["timestamp"] == fps["timestamp"])
                & (store["device"] == fps["device"])
                & (store["runtime"] == fps["runtime"])
            ]
            ratio = float(ratios["measured_value"].iloc[-1]) if len(ratios) else None
        printed_params, printed_gflops, source = _printed(model)
        where = "" if fps is None else (fps["gpu_name"] or f"CPU {fps['cpu_model']}") + f", batch {fps['batch_size']:g}"
        rows.append(
            [
                model,
                source or "—",
                _num(printed_params),
                _num(None if params is None else params["measured_value"]),
                _num(printed_gflops),
                _num(None if gflops is None else gflops["measured_value"])
                + (f" ({gflops['flops_convention']})" if gflops is not None and gflops["flops_convention"] else ""),
                _num(None if fps is None else fps["measured_value"], ".4g"),
                _num(ratio),
                where,
            ]
        )
        lacks = [name for name, m in (("#params", params), ("GFLOPs", gflops), ("a timing", fps)) if m is None]
        if lacks:
            missing.append(f"{model}: {', '.join(lacks)}")
    header = [
        "Model",
        "Printed in",
        "#Params (M) printed",
        "#Params (M) measured",
        "GFLOPs printed",
        "GFLOPs measured",
        "samples/s",
        "× HRNet-W32",
        "Timed on",
    ]
    out = [
        "**Not part of the paper**: the paper cites RTMPose but prints none of its figures. RTMPose's printed "
        "figures are its README's (MMPose's counter, multiply-adds, 256x192); MamKPD's are Table 1's, HRNet-W32's "
        "Table 2's. Measured values are this store's (GFLOPs: the counter named; speed: the latest timing, a "
        "GPU's first; the ratio is to HRNet-W32 timed in the same run).",
        "",
        md_table(header, rows),
        "",
    ]
    if missing:
        out.append(
            "Not in the store: "
            + "; ".join(missing)
            + ". `mamkpd report --run` counts #params and GFLOPs; `mamkpd fps --model NAME --vs hrnet_w32 --store "
            "PATH` times a model (`--device cuda` for a GPU timing)."
        )
    return "\n".join(out) + "\n"
