"""Heatmap codecs: keypoints <-> Gaussian heatmaps (MSRA/HRNet, DARK, UDP, DarkPose)."""

from mamkpd.codecs.heatmap import CODECS, DarkPoseHeatmap, MSRAHeatmap, UDPHeatmap, build_codec

__all__ = ["CODECS", "DarkPoseHeatmap", "MSRAHeatmap", "UDPHeatmap", "build_codec"]
