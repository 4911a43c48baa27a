"""Fit the float32 polynomial of the numba scan's exp2 (mamkpd/ops/scan_numba_kernels.py, ``_EXP2_F32``).

2^f on 0 <= f < 1 (f = x - floor(x)) by a polynomial of degree 6, fitted to relative error by Lawson's iteration
(weighted least squares, the weights driven towards the minimax solution), with p(0) = 1 and p(1) = 2 held: f
rounds to 1 for x just below an integer, and exp2 stays continuous there. Prints the coefficients rounded to
float32 and the relative error of Horner's rule evaluated in float32 with one rounding per step (an FMA).

    python scripts/fit_exp2_polynomial.py
"""

import numpy as np

DEGREE = 6


def fit(degree: int = DEGREE, iterations: int = 400) -> np.ndarray:
    # p(f) = 1 + f + sum_{i >= 2} c_i (f^i - f): p(0) = 1 and p(1) = 2 for any c_i
    f = np.linspace(1e-6, 1 - 1e-6, 40001)
    target = 2.0**f
    basis = np.stack([f**i - f for i in range(2, degree + 1)], axis=1)
    weights = np.ones_like(f)
    for _ in range(iterations):
        scale = weights / target
        c, *_ = np.linalg.lstsq(basis * scale[:, None], (target - 1 - f) * scale, rcond=None)
        error = np.abs(basis @ c + 1 + f - target) / target
        weights = weights * np.sqrt(error) + 1e-30
        weights /= weights.max()
    return np.concatenate([[1.0, 1.0 - c.sum()], c])


def horner_float32(coefficients: np.ndarray, f: np.ndarray) -> np.ndarray:
    p = np.full_like(f, coefficients[-1])
    for c in coefficients[-2::-1]:
        p = (p.astype(np.float64) * f.astype(np.float64) + np.float64(c)).astype(np.float32)  # one rounding
    return p


def main() -> None:
    coefficients = fit().astype(np.float32)
    # every float32 f in [2^-26, 1), binade by binade (below that, p(f) rounds to 1 = 2^f rounded)
    error = 0.0
    for exponent in range(-26, 0):
        bits = np.arange(2**23, dtype=np.uint32) | np.uint32((exponent + 127) << 23)
        f = bits.view(np.float32)
        exact = 2.0 ** f.astype(np.float64)
        error = max(error, float(np.max(np.abs(horner_float32(coefficients, f) - exact) / exact)))
    print("coefficients:", tuple(float(c) for c in coefficients))
    ends = horner_float32(coefficients, np.float32([0.0, 1.0]))
    print(f"p(0) = {ends[0]}, p(1) = {ends[1]}")
    print(f"largest relative error on [0, 1), every float32: {error:.3g} ({error / 2.0**-23:.2f} ulp of [1, 2))")


if __name__ == "__main__":
    main()
