"""The numba scan's float32 exp2 (every decay exp(dt A) of the CPU scan, and softplus's exponential) against
numpy's float64 exp2: within an ulp over whole binades of inputs, exact at integers, and the range's ends as
documented (on AVX-512's vreduceps and vscalefps it underflows to subnormals and 0 and overflows to inf;
elsewhere x is clamped to the normal range). Each check runs in a fresh process: one compiled for this host,
one told to compile for a generic x86-64 (the portable path, no AVX-512)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba", reason="the CPU scan's kernels are compiled by numba (a dependency: pip install numba)")

ULP = 2.0**-23  # float32's ulp on [1, 2)

CHECK = textwrap.dedent(
    """
    import json

    import numpy as np
    from numba import njit
    from mamkpd.ops.scan_numba_kernels import exp2, math_constants
    from mamkpd.ops.scan_numba_vectors import LANES, reduces_exactly, vload, vstore
    from numba import types

    @njit
    def kernel_exp2(x, out):
        k = math_constants(x)
        for i in range(0, x.shape[0], LANES):
            vstore(out, i, exp2(vload(x, i), k))

    def exp2_of(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        padded = np.zeros(-(-x.size // LANES) * LANES, dtype=np.float32)
        padded[: x.size] = x
        out = np.empty_like(padded)
        kernel_exp2(padded, out)
        return out[: x.size]

    def binade(exponent, sign):
        bits = np.arange(0, 2**23, 7, dtype=np.uint32) | np.uint32((exponent + 127) << 23) | np.uint32(sign << 31)
        return bits.view(np.float32)

    # every 7th float32 of the binades the scan's exponents dt A fall in (-32 < x < 32), both signs
    x = np.concatenate([binade(e, s) for e in range(-26, 5) for s in (0, 1)])
    exact = np.exp2(x.astype(np.float64))
    worst = float(np.max(np.abs(exp2_of(x) - exact) / exact))
    ints = np.arange(-126, 128, dtype=np.float32)
    ints_exact = bool(np.array_equal(exp2_of(ints), np.exp2(ints.astype(np.float64)).astype(np.float32)))
    ends = exp2_of(np.float32([-150.0, -140.0, 128.0, 200.0])).tolist()
    print(json.dumps([worst, ints_exact, ends, bool(reduces_exactly(types.float32))]))
    """
)


def run_check(env=None):
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check(worst, ints_exact, ends, reduced):
    assert worst < ULP, f"exp2's largest relative error {worst:.3g} is over an ulp"
    assert ints_exact, "exp2 of an integer must be exactly that power of two"
    if reduced:  # vreduceps and vscalefps, unclamped, as libm's: subnormal, then 0; inf past the largest power
        assert ends == [0.0, 2.0**-140, float("inf"), float("inf")]
    else:  # clamped to the normal range
        assert ends == [2.0**-126, 2.0**-126, 2.0**127, 2.0**127]


def test_exp2_on_this_host_is_within_an_ulp():
    check(*run_check())


def test_exp2_on_a_generic_x86_64_is_within_an_ulp():
    env = dict(os.environ, NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="")
    worst, ints_exact, ends, reduced = run_check(env)
    assert not reduced, "NUMBA_CPU_NAME=x86-64 must take the portable path"
    check(worst, ints_exact, ends, reduced)
