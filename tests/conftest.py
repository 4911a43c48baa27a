import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The real COCO/MPII/AP-10K samples (env MAMKPD_SAMPLES, default ../shared/data/pose-samples)."""
    path = Path(os.environ.get("MAMKPD_SAMPLES", REPO.parent / "shared" / "data" / "pose-samples"))
    if not path.is_dir():
        pytest.skip(f"pose samples not found at {path} (set MAMKPD_SAMPLES)")
    return path
