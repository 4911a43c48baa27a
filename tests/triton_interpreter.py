"""Running the triton backend's kernels without a GPU: Triton's interpreter on CPU tensors.

Importing this module sets ``TRITON_INTERPRET=1`` when there is no CUDA device; it must happen before the
kernels are first defined (the first call of the triton backend), which every test module that uses the
kernels ensures by importing it at the top. On a CUDA machine nothing is set: the same tests' ``gpu``
variants run the compiled kernels, and the interpreter variants skip.

The interpreter runs ``tl.associative_scan`` with a custom combine function one element at a time, calling
the combine function for each (about 0.4 ms an element): :func:`vectorised_interpreter_scan` replaces that
loop by the same inclusive scan in log2(length) whole-tile steps (Hillis-Steele), each a call of the same
combine function on numpy-backed tiles. ``test_vectorised_scan_matches_the_interpreters`` checks the
two agree, forwards and reversed.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")

try:
    import triton
    import triton.language as tl

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


def _vectorised_generic_scan(self, input):
    axis = self.axis
    acc = [np.array(arg.handle.data) for arg in input]
    length = acc[0].shape[axis]
    index = [slice(None)] * acc[0].ndim
    step = 1
    while step < length:
        # combine every element with the one `step` places earlier; tiles keep their (power-of-two) shape,
        # the first `step` results, which wrap around, are dropped
        earlier = [self.to_tensor(np.roll(a, step, axis=axis), arg.dtype) for a, arg in zip(acc, input, strict=True)]
        later = [self.to_tensor(a.copy(), arg.dtype) for a, arg in zip(acc, input, strict=True)]
        combined = self.combine_fn.fn(*earlier, *later)
        combined = combined if isinstance(combined, tuple) else (combined,)
        index[axis] = slice(step, None)
        for a, c in zip(acc, combined, strict=True):
            a[tuple(index)] = c.handle.data[tuple(index)]
        step *= 2
    return [self.to_tensor(a, arg.dtype) for a, arg in zip(acc, input, strict=True)]


def _interpreter_scan_ops():
    if TRITON_MISSING:
        return None
    from triton.runtime import interpreter

    scan_ops = getattr(interpreter, "ScanOps", None)
    return scan_ops if scan_ops is not None and "generic_scan" in vars(scan_ops) else None


_SCAN_OPS = _interpreter_scan_ops()  # None: another Triton layout, whose own (slow) scan then runs
_OWN_SCAN = _SCAN_OPS.generic_scan if _SCAN_OPS is not None else None


@contextlib.contextmanager
def _scan_implementation(implementation):
    if _SCAN_OPS is None:
        yield
        return
    before = _SCAN_OPS.generic_scan
    _SCAN_OPS.generic_scan = implementation
    try:
        yield
    finally:
        _SCAN_OPS.generic_scan = before


def vectorised_interpreter_scan():
    """Within the block, the interpreter scans whole tiles per step instead of one element per call."""
    return _scan_implementation(_vectorised_generic_scan)


def interpreters_own_scan():
    """Within the block, the interpreter's own element-by-element scan (to check the vectorised one)."""
    return _scan_implementation(_OWN_SCAN)


@contextlib.contextmanager
def triton_36_scalar_index():
    """Within the block, the interpreter turns a scalar tensor into a Python int as Triton 3.6's did,
    ``int()`` of its one-element array, which numpy 2 refuses (3.9 squeezes it first): a kernel that loops
    over ``range()`` of a scalar argument fails here as it does under Triton 3.6 with numpy 2."""
    from triton.runtime import interpreter

    own = getattr(interpreter, "_patch_lang_tensor", None)
    if own is None:
        pytest.skip("this Triton's interpreter patches tensors elsewhere: cannot play Triton 3.6's")

    def patch_as_triton_36(tensor, scope):
        own(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))

    interpreter._patch_lang_tensor = patch_as_triton_36
    try:
        yield
    finally:
        interpreter._patch_lang_tensor = own


if not TRITON_MISSING:
    from mamkpd.ops.scan_triton_kernels import _compose

    @triton.jit
    def recurrence_kernel(a_ptr, b_ptr, out_ptr, ROWS: tl.constexpr, COLS: tl.constexpr, REVERSE: tl.constexpr):
        """h_t = a_t h_{t-1} + b_t along each row (from the end with REVERSE), with the scan kernels' combine."""
        offsets = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        a, b = tl.load(a_ptr + offsets), tl.load(b_ptr + offsets)
        _, h = tl.associative_scan((a, b), axis=1, combine_fn=_compose, reverse=REVERSE)
        tl.store(out_ptr + offsets, h)
