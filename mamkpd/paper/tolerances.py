"""How close a measurement must be to a printed value (the paper's, or a published count) to count as the same.

One policy for the reproductions, the baselines' tests, ``mamkpd report --run`` and ``mamkpd reproduce``.
Each tolerance is (value, kind): ``rel`` a fraction of the printed value, ``abs`` in the metric's unit.
"""

from __future__ import annotations

__all__ = [
    "tolerance_for",
    "TOLERANCE_CLASSES",
    "ACCURACY_ABS",
    "FPS_RATIO_REL",
    "GFLOPS_REL",
    "PARAMS_REL_ABLATION",
    "PARAMS_REL_BASELINE",
    "PARAMS_REL_MAMKPD",
    "PRINTED_UNIT",
]

# What a registered model declares as its tolerance_class (mamkpd.models.ModelInfo): the authors' own
# architecture, whose counts differ from printed ones by the printing alone, or a reimplementation from the
# paper's text, which leaves details open.
TOLERANCE_CLASSES = ("official", "reimplementation")

# issue 2's targets: MamKPD B/L params within 5 %, the Table 5 ablations within 7 %
PARAMS_REL_MAMKPD = 0.05
PARAMS_REL_ABLATION = 0.07
# A baseline is the official architecture, so its count differs from a printed one by the printing alone.
# The paper prints 0.1M: half a unit is 0.5 % of the smallest baseline (RTMO-S, 9.9M). The published
# counts (official READMEs, MMPose configs; mamkpd.paper.published) print 0.01M to 0.1M on models of
# 9.87M and more, within the same bound. One tolerance for both comparisons.
PARAMS_REL_BASELINE = 0.005
GFLOPS_REL = 0.05
# a retrained model lands within a few tenths of a point of a published AP/PCKh (seed, hardware)
ACCURACY_ABS = 0.5
# the paper's FPS column is judged only through ratios, and only on a GPU: its own figures come from
# an RTX 4090 (MamKPD) and an A100 (ViTPose) at an unstated batch size
FPS_RATIO_REL = 0.25
# The paper prints params and GFLOPs to one decimal; a measured figure agrees with a printed one when it
# rounds or truncates to it, i.e. lies within one printed unit (the findings' test of a printed figure).
PRINTED_UNIT = 0.1


def tolerance_for(table: str, metric: str, tolerance_class: str) -> tuple[float, str]:
    """The tolerance for ``metric`` in paper table ``table`` of a model of ``tolerance_class`` (its
    registered ``ModelInfo.tolerance_class``, one of :data:`TOLERANCE_CLASSES`)."""
    if tolerance_class not in TOLERANCE_CLASSES:
        raise ValueError(f"tolerance_class must be one of {TOLERANCE_CLASSES}, got {tolerance_class!r}")
    if metric == "params_m":
        if tolerance_class == "official":
            return PARAMS_REL_BASELINE, "rel"
        return (PARAMS_REL_ABLATION if table in ("table5", "fig3") else PARAMS_REL_MAMKPD), "rel"
    if metric == "gflops":
        return GFLOPS_REL, "rel"
    if metric.startswith("fps_ratio"):
        return FPS_RATIO_REL, "rel"
    return ACCURACY_ABS, "abs"
