"""Heatmap codecs: keypoints <-> Gaussian heatmaps (MSRA/HRNet, DARK, UDP)."""

from mamkpd.codecs.heatmap import CODECS, MSRAHeatmap, UDPHeatmap, build_codec

__all__ = ["CODECS", "MSRAHeatmap", "UDPHeatmap", "build_codec"]
