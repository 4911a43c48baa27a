"""Baselines of the paper's comparisons, registered in the same registry as MamKPD: SimpleBaseline,
HRNet, ViTPose, TokenPose, PPT, RTMPose, Lite-HRNet, Dite-HRNet, I²R-Net (top-down, one person crop per sample), RTMO
and KAPAO (one-stage, one whole image per sample)."""

from . import ditehrnet, hrnet, i2rnet, kapao, litehrnet, ppt, rtmo, rtmpose, simple_baseline, tokenpose, vitpose  # noqa: F401  (registers the models)
