"""Findings computed from this suite's measurements: ``baseline_findings`` (the paper's baseline figures)."""
