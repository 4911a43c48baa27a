"""Baselines of the paper's comparisons, registered in the same registry as MamKPD: SimpleBaseline,
HRNet, ViTPose, TokenPose, PPT, RTMPose, Lite-HRNet, Dite-HRNet, I²R-Net (top-down, one person crop per sample),
RTMO, KAPAO and GroupPose (one-stage, one whole image per sample)."""

from . import (  # noqa: F401  (registers the models)
    ditehrnet,
    grouppose,
    hrnet,
    i2rnet,
    kapao,
    litehrnet,
    ppt,
    rtmo,
    rtmpose,
    simple_baseline,
    tokenpose,
    vitpose,
)
