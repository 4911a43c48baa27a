"""Codecs: keypoints <-> model targets. Gaussian heatmaps (MSRA/HRNet, DARK, UDP, DarkPose) and SimCC's x/y
bin vectors (RTMPose); each decodes its model's outputs and maps the flip test's back (``flip_back``)."""

from mamkpd.codecs.heatmap import CODECS, DarkPoseHeatmap, MSRAHeatmap, UDPHeatmap, build_codec
from mamkpd.codecs.simcc import SimCCLabel

__all__ = ["CODECS", "DarkPoseHeatmap", "MSRAHeatmap", "SimCCLabel", "UDPHeatmap", "build_codec"]
