"""numba kernels of the ``numba`` scan backend. Imported only by :mod:`.scan_numba`, and only once numba is
known to be installed (this module imports it at the top).

Each kernel runs a range of tasks with the GIL released; the caller runs ranges on several threads. A task is
one (batch, channel) in the forward, one (batch, group, block of channels) in the backward (B and C are shared
by a group's channels, so their gradients are summed inside a task with no write races). Inside a task the
loop over time is sequential and the loop over the N states is written so that LLVM vectorises it: B and C
come time-major, (batch, groups, L, N), and ``exp`` is a branch-free polynomial with an exact power-of-two
scaling (libm's scalar exp would not vectorise and would cost most of the time).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["scan_backward", "scan_forward"]

JIT = dict(cache=True, fastmath=False, error_model="numpy")  # numpy: no ZeroDivisionError branch (it blocks SIMD)


# ---------------------------------------------------------------------------------- a vectorisable exp
@intrinsic
def _bits_to_float(typingctx, bits):
    """Reinterpret an int32 (int64) as the float32 (float64) with those bits."""
    target = {types.int32: types.float32, types.int64: types.float64}.get(bits)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType() if target == types.float32 else ir.DoubleType())

    return target(bits), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma): the exp polynomial and the recurrence take half the instructions."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


# Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, then exp(r) by a polynomial and 2^k from its bits.
_F32 = dict(
    log2e=np.float32(1.44269504088896341),
    ln2_hi=np.float32(0.693359375),
    ln2_lo=np.float32(-2.12194440e-4),
    # x is clamped to [lo, hi], branch-free: below lo exp(x) < 1.2e-38 and comes out as about that, above hi
    # it would overflow and comes out as 2.4e38
    lo=np.float32(-87.3),
    hi=np.float32(88.7),
    # Cephes expf: exp(r) = 1 + r + r^2 (p0 + p1 r + ...), relative error about 1 ulp
    p=tuple(np.float32(c) for c in (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3,
                                   1.3981999507e-3, 1.9875691500e-4)),
)  # fmt: skip
_F64_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))  # Taylor to r^13: error < 1e-17 on |r| <= ln2/2


def fast_exp(x):  # pragma: no cover - replaced by the overload below inside numba
    return math.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        log2e, ln2_hi, ln2_lo, lo, hi = (_F32[k] for k in ("log2e", "ln2_hi", "ln2_lo", "lo", "hi"))
        p0, p1, p2, p3, p4, p5 = _F32["p"]
        half, one = np.float32(0.5), np.float32(1.0)

        def exp32(x):
            xc = min(max(x, lo), hi)
            k = np.floor(xc * log2e + half)
            r = fma(k, -ln2_lo, fma(k, -ln2_hi, xc))
            poly = fma(fma(fma(fma(fma(p5, r, p4), r, p3), r, p2), r, p1), r, p0)
            e = fma(poly, r * r, r) + one
            scale = _bits_to_float(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
            return e * scale

        return exp32
    if x == types.float64:
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _F64_INV_FACT

        def exp64(x):
            xc = min(max(x, -708.0), 709.0)  # as in float32: clamped, branch-free
            k = np.floor(xc * 1.4426950408889634 + 0.5)
            r = fma(k, -1.90821492927058770002e-10, fma(k, -6.93147180369123816490e-01, xc))
            e = fma(fma(fma(fma(fma(fma(c13, r, c12), r, c11), r, c10), r, c9), r, c8), r, c7)
            e = fma(fma(fma(fma(fma(fma(fma(e, r, c6), r, c5), r, c4), r, c3), r, c2), r, c1), r, c0)
            scale = _bits_to_float(np.int64((np.int64(k) + np.int64(1023)) << np.int64(52)))
            return e * scale

        return exp64
    return None


# Cephes logf on [sqrt(1/2), sqrt(2)): log(1 + f) = f - f^2/2 + f^3 P(f), relative error about 1 ulp
_LOGF_P = tuple(np.float32(c) for c in (3.3333331174e-1, -2.4999993993e-1, 2.0000714765e-1, -1.6668057665e-1,
                                        1.4249322787e-1, -1.2420140846e-1, 1.1676998740e-1, -1.1514610310e-1,
                                        7.0376836292e-2))  # fmt: skip


def softplus_and_sigmoid(x):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(softplus_and_sigmoid, inline="always")
def _softplus_and_sigmoid_overload(x):
    """(softplus(x), sigmoid(x)) as torch computes them (softplus threshold 20). float32: branch-free, from one
    exp(-|x|), so that a loop over time vectorises; float64 (tests) uses libm."""
    if x == types.float32:
        q0, q1, q2, q3, q4, q5, q6, q7, q8 = _LOGF_P
        one, half, zero, twenty = np.float32(1.0), np.float32(0.5), np.float32(0.0), np.float32(20.0)
        sqrt2, ln2_hi, ln2_lo = np.float32(1.41421356), np.float32(0.693359375), np.float32(-2.12194440e-4)

        def f32(x):
            w = fast_exp(-abs(x))  # in (0, 1]
            s = one + w  # in [1, 2]: log1p(w) = log(s) * w / (s - 1), exact where s rounds to 1
            big = s > sqrt2
            e = one if big else zero
            f = (s * half if big else s) - one
            ff = f * f
            poly = ((((((((q8 * f + q7) * f + q6) * f + q5) * f + q4) * f + q3) * f + q2) * f + q1) * f + q0) * f * ff
            log_s = f + ((poly + e * ln2_lo) - half * ff) + e * ln2_hi
            log1p_w = w if s == one else log_s * (w / (s - one))
            softplus = x if x > twenty else max(x, zero) + log1p_w
            sigmoid = one / s if x >= zero else w / s
            return softplus, sigmoid

        return f32
    if x == types.float64:

        def f64(x):
            return (x if x > 20.0 else math.log1p(math.exp(x))), 1.0 / (1.0 + math.exp(-x))

        return f64
    return None


def _silu_parts(z):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(_silu_parts, inline="always")
def _silu_parts_overload(z):
    """(silu(z), d silu / dz) with the vectorisable exp."""
    one = np.float32(1.0) if z == types.float32 else 1.0

    def impl(z):
        sig = one / (one + fast_exp(-z))
        return z * sig, sig * (one + z * (one - sig))

    return impl


# ------------------------------------------------------------------------------------------- kernels
# Time loops are split into passes so that each vectorises: per time step (dt, dt*u, the epilogue) over t,
# the recurrence over the N states. Sums over n stay in order (no reassociation), as in the reference.


@njit(inline="always", **JIT)
def _prepare_channel(delta_bd, u_bd, bias_d, softplus, dt, dtu, dsig):
    """dt = softplus(delta + bias) (or delta + bias), dtu = dt * u and d dt / d delta, for one channel."""
    for t in range(delta_bd.shape[0]):
        raw = delta_bd[t] + bias_d
        if softplus:
            dt[t], dsig[t] = softplus_and_sigmoid(raw)
        else:
            dt[t] = raw
        dtu[t] = dt[t] * u_bd[t]


@njit(inline="always", **JIT)
def _states(dt, dtu, a_d, B_bg, hs):
    """hs[t + 1] = h_t = exp(dt_t A) h_{t-1} + dtu_t B_t, hs[0] = 0: the recurrence of one channel."""
    hs[0, :] = 0
    for t in range(dt.shape[0]):
        for n in range(a_d.shape[0]):
            hs[t + 1, n] = fma(fast_exp(dt[t] * a_d[n]), hs[t, n], dtu[t] * B_bg[t, n])


@njit(nogil=True, **JIT)
def scan_forward(u, delta, A, Bt, Ct, D, z, bias, softplus, first, last, out):
    """out = selective scan, for tasks (batch * dim + channel) first .. last - 1. Bt, Ct: (batch, groups, L, N);
    an absent z is a (0, 0, 0) array, an absent D or bias zeros."""
    dim, length = u.shape[1], u.shape[2]
    n_state = A.shape[1]
    per_group = dim // Bt.shape[1]
    has_z = z.shape[0] > 0
    dt = np.empty(length, dtype=u.dtype)
    dtu = np.empty(length, dtype=u.dtype)
    dsig = np.empty(length, dtype=u.dtype)
    hs = np.empty((length + 1, n_state), dtype=u.dtype)  # hs[t + 1] = h_t, hs[0] = 0
    for task in range(first, last):
        b, d = task // dim, task % dim
        a_d, B_bg, C_bg, y = A[d], Bt[b, d // per_group], Ct[b, d // per_group], out[b, d]
        _prepare_channel(delta[b, d], u[b, d], bias[d], softplus, dt, dtu, dsig)
        _states(dt, dtu, a_d, B_bg, hs)
        u_bd, D_d = u[b, d], D[d]
        for t in range(length):
            acc = C_bg[t, 0] * hs[t + 1, 0]
            for n in range(1, n_state):
                acc += C_bg[t, n] * hs[t + 1, n]
            y[t] = acc + D_d * u_bd[t]
        if has_z:
            z_bd = z[b, d]
            for t in range(length):
                y[t] *= _silu_parts(z_bd[t])[0]


@njit(nogil=True, **JIT)
def scan_backward(
    gout, u, delta, A, Bt, Ct, D, z, bias, softplus, blocks, first, last, gu, gdelta, gA, gB, gC, gD, gz, gbias
):
    """Gradients of sum(gout * out), for tasks first .. last - 1 of (batch, group, block of a group's channels),
    ``blocks`` blocks per group. A task owns gB[b, g, block] and gC[b, g, block] ((L, N) partial sums over its
    channels, summed over blocks by the caller), and gA[b, d], gD[b, d], gbias[b, d] (summed over the batch by
    the caller)."""
    dim, length = u.shape[1], u.shape[2]
    n_state = A.shape[1]
    groups = Bt.shape[1]
    per_group = dim // groups
    per_block = -(-per_group // blocks)
    has_z = z.shape[0] > 0
    for task in range(first, last):
        b, g, blk = task // (groups * blocks), (task // blocks) % groups, task % blocks
        B_bg, C_bg, gB_t, gC_t = Bt[b, g], Ct[b, g], gB[b, g, blk], gC[b, g, blk]
        gB_t[:] = 0
        gC_t[:] = 0
        dt = np.empty(length, dtype=u.dtype)
        dtu = np.empty(length, dtype=u.dtype)
        dsig = np.empty(length, dtype=u.dtype)
        gy = np.empty(length, dtype=u.dtype)
        hs = np.empty((length + 1, n_state), dtype=u.dtype)  # hs[t + 1] = h_t, hs[0] = 0
        decay = np.empty((length, n_state), dtype=u.dtype)  # exp(dt_t A), then dL/d(dt_t A)
        gh = np.empty((length, n_state), dtype=u.dtype)  # dL/dh_t
        carry = np.empty(n_state, dtype=u.dtype)
        first = g * per_group + blk * per_block
        for d in range(first, min(first + per_block, (g + 1) * per_group)):
            a_d, u_bd, gout_bd = A[d], u[b, d], gout[b, d]
            _prepare_channel(delta[b, d], u_bd, bias[d], softplus, dt, dtu, dsig)
            hs[0, :] = 0
            for t in range(length):
                for n in range(n_state):
                    decay[t, n] = fast_exp(dt[t] * a_d[n])
                    hs[t + 1, n] = fma(decay[t, n], hs[t, n], dtu[t] * B_bg[t, n])
            if has_z:  # out = y * silu(z), y = <C, h> + D u
                z_bd, gz_bd, D_d = z[b, d], gz[b, d], D[d]
                for t in range(length):
                    acc = C_bg[t, 0] * hs[t + 1, 0]
                    for n in range(1, n_state):
                        acc += C_bg[t, n] * hs[t + 1, n]
                    gy[t] = acc + D_d * u_bd[t]  # y, for now
                for t in range(length):
                    silu, dsilu = _silu_parts(z_bd[t])
                    gz_bd[t] = gout_bd[t] * gy[t] * dsilu
                    gy[t] = gout_bd[t] * silu
            else:
                gy[:] = gout_bd
            # dL/dh_t = C_t gy_t + exp(dt_{t+1} A) dL/dh_{t+1}: the only pass that runs backwards in time.
            # The others are split so that each loop writes few arrays (LLVM vectorises only then).
            carry[:] = 0
            for t in range(length - 1, -1, -1):
                for n in range(n_state):
                    gh[t, n] = fma(gy[t], C_bg[t, n], carry[n])
                    carry[n] = decay[t, n] * gh[t, n]
            for t in range(length):  # h_t = decay_t h_{t-1} + dtu_t B_t
                for n in range(n_state):
                    gC_t[t, n] = fma(gy[t], hs[t + 1, n], gC_t[t, n])
            for t in range(length):
                for n in range(n_state):
                    gB_t[t, n] = fma(gh[t, n], dtu[t], gB_t[t, n])
            for t in range(length):
                for n in range(n_state):
                    decay[t, n] = gh[t, n] * decay[t, n] * hs[t, n]  # dL/d(dt_t A_n)
            gA_bd = gA[b, d]
            gA_bd[:] = 0
            for t in range(length):
                for n in range(n_state):
                    gA_bd[n] = fma(decay[t, n], dt[t], gA_bd[n])
            gu_bd, gdelta_bd, D_d = gu[b, d], gdelta[b, d], D[d]
            for t in range(length):
                sum_B = gh[t, 0] * B_bg[t, 0]
                sum_x = decay[t, 0] * a_d[0]
                for n in range(1, n_state):
                    sum_B = fma(gh[t, n], B_bg[t, n], sum_B)
                    sum_x = fma(decay[t, n], a_d[n], sum_x)
                gu_bd[t] = fma(gy[t], D_d, dt[t] * sum_B)
                gdelta_bd[t] = fma(u_bd[t], sum_B, sum_x)
            if softplus:
                for t in range(length):
                    gdelta_bd[t] *= dsig[t]
            gD_acc = gy[0] * u_bd[0]
            gbias_acc = gdelta_bd[0]
            for t in range(1, length):
                gD_acc = fma(gy[t], u_bd[t], gD_acc)
                gbias_acc += gdelta_bd[t]
            gD[b, d] = gD_acc
            gbias[b, d] = gbias_acc
