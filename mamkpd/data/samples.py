"""Location of the small real pose samples (COCO, MPII, AP-10K formats) used by tests and demos."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES_ENV = "MAMKPD_SAMPLES"
# a checkout sits beside shared/ (…/main and …/shared), so the default is ../shared/... of the repo
DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "pose-samples"


def samples_root() -> Path:
    """$MAMKPD_SAMPLES if set, else ../shared/data/pose-samples relative to the repository root."""
    return Path(os.environ.get(SAMPLES_ENV) or DEFAULT_SAMPLES).resolve()


def sample_file(*parts: str) -> Path:
    """A file of the samples; FileNotFoundError naming it and the variable when it is missing."""
    path = samples_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"pose sample {path} not found; set {SAMPLES_ENV} to the pose-samples folder")
    return path
