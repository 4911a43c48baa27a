import os

import pytest
import torch

# Triton's @jit reads TRITON_INTERPRET when a function is defined, its own library's included: set it before
# anything (a test module collected before the Triton tests, torch's native ops) imports triton, so that the
# kernels and triton.language's helpers are all interpreted on a machine without CUDA (tests/triton_interpreter.py)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
