"""Results-store rows of a speed measurement: the FPS itself and its ratio to the reference model."""

from __future__ import annotations

import math

from ..measure.fps import REFERENCE_MODEL, FpsMeasurement

__all__ = ["record_fps"]


def record_fps(
    store,
    measurement: FpsMeasurement,
    ratio: float | None = None,
    reference: str = REFERENCE_MODEL,
    reading: str = "",
) -> list[dict[str, str]]:
    """Append a measurement (and its speed ratio to ``reference``) to a results store.

    Rows are keyed to Table 2 where the model reproduces one of its rows; the paper's FPS is shown
    beside ours but never judged directly (different GPUs); the ratio is judged on GPUs only. ``reading``
    names a model built otherwise than the paper's row (e.g. ``fused_cross_scan=False``): stored, never
    compared with the paper.
    """
    from ...models import model_info
    from ...paper import load_table
    from ...paper.tolerances import FPS_RATIO_REL

    table2 = load_table("table2")
    # a run at another input size is not the paper's row
    at_paper_size = tuple(measurement.input_size) == tuple(model_info(measurement.model).input_size)
    paper_rows = table2[(table2["registry_name"] == measurement.model) & at_paper_size]
    ref_rows = table2[table2["registry_name"] == reference]
    ref_fps = float(ref_rows["fps"].iloc[0]) if len(ref_rows) else math.nan
    on_gpu = measurement.device.startswith("cuda")
    where = f"{measurement.device} ({'GPU' if on_gpu else 'CPU'})"
    protocol = measurement.store_fields()
    written = []
    keys = [(str(r["row"]), float(r["fps"])) for _, r in paper_rows.iterrows()] or [(measurement.model, math.nan)]
    for row, paper_fps in keys:
        table = "table2" if len(paper_rows) else "fps"
        written.append(
            store.record(
                table=table,
                row=row,
                model=measurement.model,
                reading=reading,
                metric="fps",
                paper=paper_fps,
                measured=measurement.result.median,
                status="measured",
                status_reason=(
                    f"timed on {where}; the paper's figure is from another GPU at an unstated batch "
                    f"size, so only the ratio to {reference} is compared"
                    if len(paper_rows)
                    else f"timed on {where}; no paper figure for this model at this input size"
                ),
                **protocol,
            )
        )
        if ratio is None:
            continue
        paper_ratio = paper_fps / ref_fps if not math.isnan(paper_fps) and ref_fps else math.nan
        tolerance = FPS_RATIO_REL if on_gpu and not math.isnan(paper_ratio) and not reading else None
        kwargs = dict(tolerance=tolerance, tolerance_kind="rel") if tolerance else dict(status="measured")
        reason = (
            ""
            if tolerance
            else (
                f"{where}: the paper's ratios are GPU figures"
                if not on_gpu
                else f"reading {reading}: not the paper's model"
                if reading
                else "the paper gives no FPS for this row"
            )
        )
        written.append(
            store.record(
                table=table,
                row=row,
                model=measurement.model,
                reading=reading,
                metric=f"fps_ratio_to_{reference}",
                paper=paper_ratio,
                measured=ratio,
                status_reason=reason,
                **kwargs,
                **{**protocol, "unit": f"x {reference} samples/s"},
            )
        )
    return written
