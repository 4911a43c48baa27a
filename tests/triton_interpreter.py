"""Running the triton backend's kernels without a GPU: Triton's interpreter on CPU tensors.

Importing this module sets ``TRITON_INTERPRET=1`` when there is no CUDA device; it must happen before the
kernels are first defined (the first call of the triton backend), which every test module that uses the
kernels ensures by importing it at the top. On a CUDA machine nothing is set: the same tests' ``gpu``
variants run the compiled kernels, and the interpreter variants skip.
"""

from __future__ import annotations

import contextlib
import inspect
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")

try:
    import triton  # noqa: F401

    TRITON_MISSING = None
except Exception as exc:  # not installed (the dev extra installs it on Linux), or broken
    TRITON_MISSING = f"triton does not import ({exc}); ./install.sh installs it with the dev extra"

if TRITON_MISSING:
    requires_interpreter = pytest.mark.skip(reason=TRITON_MISSING)
else:
    requires_interpreter = pytest.mark.skipif(
        not INTERPRET,
        reason="TRITON_INTERPRET is not set on this CUDA machine: the kernels are compiled (the gpu variants run them)",
    )
requires_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the compiled kernels need one"),
    pytest.mark.skipif(TRITON_MISSING is not None, reason=TRITON_MISSING or ""),
]


@contextlib.contextmanager
def triton_36_scalar_index():
    """Within the block, the interpreter turns a scalar tensor into a Python int as Triton 3.6's did,
    ``int()`` of its one-element array, which numpy 2 refuses (3.9 squeezes it first): a kernel that loops
    over ``range()`` of a scalar argument fails here as it does under Triton 3.6 with numpy 2."""
    from triton.runtime import interpreter

    own = getattr(interpreter, "_patch_lang_tensor", None)
    if own is None:
        pytest.skip("this Triton's interpreter patches tensors elsewhere: cannot play Triton 3.6's")
    if len(inspect.signature(own).parameters) == 1:  # Triton 3.0-3.2's: int() of the array already
        yield
        return

    def patch_as_triton_36(tensor, scope):
        own(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))

    interpreter._patch_lang_tensor = patch_as_triton_36
    try:
        yield
    finally:
        interpreter._patch_lang_tensor = own
