"""Baselines of the paper's comparisons, registered in the same registry as MamKPD: SimpleBaseline,
HRNet, ViTPose, RTMPose (top-down, one person crop per sample) and RTMO (one-stage, one whole image per sample)."""

from . import hrnet, rtmo, rtmpose, simple_baseline, vitpose  # noqa: F401  (importing registers the models)
