"""The numba scan's vector intrinsics that its kernels rely on for exact results: hsum adds a vector's lanes
within float rounding of the exact sum, scale2 multiplies by a power of two exactly (subnormal results included,
on AVX-512's vscalefps as on the integer-exponent path), and held passes a value through unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from mamkpd.ops.scan_numba_vectors import LANES, held, hsum, scale2, vload, vstore  # noqa: E402

DTYPES = [np.float32, np.float64]


@numba.njit
def _sums(tile, at, pitch, by_lanes):
    for i in range(LANES):
        by_lanes[i] = hsum(vload(tile, at + i * pitch))


@numba.njit
def _scaled(p, k, out):
    vstore(out, 0, scale2(vload(p, 0), vload(k, 0)))


@numba.njit
def _held(values, out):
    vstore(out, 0, held(vload(values, 0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_hsum_is_the_sum_of_the_lanes(dtype):
    rng = np.random.default_rng(0)
    pitch, at = LANES + 5, 3  # rows apart by more than a vector, at an odd start
    tile = (rng.standard_normal(at + LANES * pitch) * 10.0 ** rng.integers(-3, 4, at + LANES * pitch)).astype(dtype)
    by_lanes = np.empty(LANES, dtype)
    _sums(tile, at, pitch, by_lanes)
    exact = [math.fsum(tile[at + i * pitch : at + i * pitch + LANES].astype(np.float64)) for i in range(LANES)]
    scale = np.abs(tile).max() * LANES
    np.testing.assert_allclose(by_lanes, exact, rtol=0, atol=scale * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale2_is_an_exact_power_of_two_product(dtype):
    # as exp2's clamped path uses it: p = 2**f of a reduced argument (|f| <= 1/2 here; float32's f lies in [0, 1)),
    # k over the normal exponents (that path clamps x to them)
    rng = np.random.default_rng(1)
    p = (2.0 ** rng.uniform(-0.5, 0.5, LANES)).astype(dtype)
    low = int(np.log2(np.finfo(dtype).tiny))
    k = np.linspace(low, -low - 1, LANES).round().astype(dtype)
    p[0] = 1 / 1.37  # times 2**low: a subnormal result that drops mantissa bits, so it is rounded (once)
    out = np.empty(LANES, dtype)
    _scaled(p, k, out)
    expected = np.ldexp(p.astype(np.float64), k.astype(np.int64))
    with np.errstate(under="ignore"):
        expected = expected.astype(dtype)
    assert out[0] != 0 and out[0] < np.finfo(dtype).tiny
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_held_passes_values_through(dtype):
    values = np.arange(1, LANES + 1, dtype=dtype) / 7
    out = np.empty(LANES, dtype)
    _held(values, out)
    assert np.array_equal(out, values)
