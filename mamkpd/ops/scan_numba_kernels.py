"""numba kernels of the ``numba`` scan backend. Imported only by :mod:`.scan_numba`, and only once numba is
known to be installed (this module imports it at the top).

Layout: the arrays are views of the caller's tensors, read and written in place with whatever strides they
have (nothing is copied into a kernel layout). A kernel scans ``K`` sequences at once (the groups of a grouped
scan, or the four directions of SS2D's cross scan) over rows of ``channels`` channels:

- ``x``, ``out``, ``gout``, ``gx``: (batch, Kx, P, channels) with Kx = K (one input row set per sequence) or
  Kx = 1 (one shared by the K sequences, and the K outputs summed into one: the cross scan);
- ``delta``, ``z``, ``gdelta``, ``gz``: (batch, K, P, channels); an absent z is a (0, 0, 0, 0) array; in the
  forward, with a projection ``proj`` (K, rank, padded) that is not (0, 0, 0), delta is its low-rank input
  (batch, K, P, rank), projected as it is read;
- ``order``: (K, L), the row (position) that step t of sequence k reads and writes (the identity for a
  grouped scan);
- ``B``, ``C``: (batch, K, N, P), read at the step's position; ``gB``, ``gC``: (batch, blocks, K, N, P);
- ``A2``, ``A``: (K, N, padded), A log2(e) (the exponent the recurrence takes in base 2) and A; ``D``,
  ``bias``: (K, padded); padded is channels rounded up to whole blocks (parameters are small: they are the
  only arrays the caller pads).

A task is one (batch, block of ``BLOCK`` channels) and runs all K sequences, in order, so that the sums over
them are the same bits whatever the thread count. Inside a task the vectors of :mod:`.scan_numba_vectors`
carry ``LANES`` channels each; every lane does the same scalar arithmetic, so a channel's result does not
depend on the lane it lands in. Time runs in chunks of ``CHUNK`` steps: a first pass loads the chunk's
rows (prefetching those ahead: the column-major directions jump a whole image row per step) and computes
dt = softplus(delta + bias), a second runs the recurrence.

The loops that compute read and write only (CHUNK, BLOCK) tiles, channels innermost (a branch between rows
and tiles inside them halves the recurrence's speed); each chunk's values move between the arrays and the
tiles in one of three ways: where an array's channels are adjacent in memory (stride 1, the model's
channels-last activations), as vectors straight from its rows; where they lie along time (unit stride over
consecutive steps: a contiguous (batch, dim, L) tensor), as LANES x LANES blocks loaded along time and
transposed in registers; otherwise, and for the last block when the channels do not fill it, value by
value, zero past the last channel. The padded lanes compute with u = 0 and A = 0, so their state stays zero
and they add exact zeros to the sums over channels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .scan_numba_vectors import (
    LANES,
    fraction,
    held,
    hsum,
    item,
    prefetch,
    prefetch_item,
    reduces_exactly,
    scale2,
    splat,
    transpose_in,
    transpose_out,
    vabs,
    veq,
    vfloor,
    vfma,
    vge,
    vgt,
    vload,
    vlog,
    vmax,
    vmin,
    vrint,
    vstore,
    where,
)

__all__ = ["BLOCK", "CHUNK", "FMA_CHAINS", "LOG2E", "fma_chains", "scan_backward", "scan_forward"]

JIT = dict(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
VECTORS = 2  # vectors per task: two independent recurrences interleave, and a row's 128 bytes are read at once
BLOCK = VECTORS * LANES  # channels per task
CHUNK = 32  # time steps per chunk
AHEAD = 32  # steps between a row's prefetch and its use
LINE = 64  # bytes of a cache line
LOG2E = 1.4426950408889634

# ------------------------------------------------------------------------------------------- vector math
# exp2(x) = 2^k 2^f. float32: k = floor(x), 0 <= f < 1, and 2^f by a polynomial of degree 6 fitted to relative
# error with p(0) = 1 and p(1) = 2 held (f rounds to 1 for x just below an integer; scripts/fit_exp2_polynomial.py).
# On AVX-512 (with DQ), f comes from one vreduceps and vscalefps scales by 2^floor(x) itself: k is never formed,
# one instruction in place of a rounding and a subtraction (three uops on Intel cores, where rounding takes two),
# and a shorter dependency chain. Error over every float32 x with 2^-26 <= |x| < 32: 1.05e-7
# relative, 0.88 ulp (f = 1 + x rounds for -1/2 < x < 0). float64: k = rint(x), |f| <= 1/2, and Taylor of
# exp(f ln 2) to degree 13 (error below 1e-17). Where 2^k is made from its exponent bits, x is clamped,
# branch-free, to the normal range first: exp2 of less comes out as the smallest normal number, of more as the
# largest finite power. On the vreduceps path no clamp is needed: exp2 underflows to subnormals and 0 and
# overflows to inf, as libm's does.
_EXP2_F32 = tuple(
    np.float32(c)
    for c in (1.0, 0.6931470036506653, 0.2402295172214508, 0.05548415333032608, 0.009678063914179802,
              0.00124408770352602, 0.00021715025650337338)
)  # fmt: skip
_EXP2_F64 = tuple(math.log(2.0) ** i / math.factorial(i) for i in range(14))
# log1p(w) = w P(w) on [0, 1], minimax relative error 1.5e-7 in float32 (the rounding floor)
_LOG1P_F32 = tuple(
    np.float32(c)
    for c in (1.0, -0.4999990165233612, 0.3332996070384979, -0.2495412826538086, 0.19675911962985992,
              -0.1530551165342331, 0.10603514313697815, -0.05695812776684761, 0.019850706681609154,
              -0.0032438556663691998)
)  # fmt: skip


_ONE_ZERO_TWENTY = (1.0, 0.0, 20.0, -LOG2E)  # softplus's constants (its threshold is 20), and -log2(e)


def _held_splats(values):
    """A function that returns ``held(splat(v))`` for each of ``values`` (a tuple of vectors)."""
    first = values[0]
    if len(values) == 1:
        return njit(inline="always")(lambda: (held(splat(first)),))
    rest = _held_splats(values[1:])
    return njit(inline="always")(lambda: (held(splat(first)),) + rest())


# the constants of each dtype: exp2's clamp and polynomial, log1p's polynomial (float32 only), softplus's
_CONSTANTS = {
    types.float32: tuple(
        _held_splats(tuple(np.float32(c) for c in values))
        for values in ((-126.0, 127.0, *_EXP2_F32), _LOG1P_F32, _ONE_ZERO_TWENTY)
    ),
    types.float64: tuple(_held_splats(values) for values in ((-1022.0, 1023.0, *_EXP2_F64), (0.0,), _ONE_ZERO_TWENTY)),
}


def math_constants(like):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(math_constants, inline="always")
def _math_constants(like):
    """The vector constants of :func:`exp2` and :func:`softplus_sigmoid` for the dtype of the array ``like``,
    made once per kernel call and passed down. Each goes through ``held``, so it stays in a register (or one
    stack slot) across the loops: LLVM otherwise reloads a visible constant from the constant pool at every use,
    through 64-bit addresses it reshuffles between general registers every iteration (a third of the state
    loop's instructions)."""
    exp2_k, log1p_k, scalars = _CONSTANTS[like.dtype]
    return lambda like: (exp2_k(), log1p_k(), scalars())


def _horner(count, first):
    """p(x) = k[first] + x (k[first + 1] + x (...)) over ``count`` of the constants ``k``, by Horner's rule with
    one rounding per step (fma); nested functions rather than a loop over the tuple (numba's unrolled tuple loop
    leaves dead variables)."""
    if count == 1:
        return njit(inline="always")(lambda x, k: k[first])
    rest = _horner(count - 1, first + 1)

    @njit(inline="always")
    def poly(x, k):
        return vfma(rest(x, k), x, k[first])

    return poly


_EXP2_POLY = {types.float32: _horner(len(_EXP2_F32), 2), types.float64: _horner(len(_EXP2_F64), 2)}
_log1p_poly32 = _horner(len(_LOG1P_F32), 0)


def exp2(x, constants):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(exp2, inline="always")
def _exp2(x, constants):
    poly = _EXP2_POLY[x.dtype]

    if reduces_exactly(x.dtype):

        def unclamped(x, constants):
            return scale2(poly(fraction(x), constants[0]), x)  # vscalefps: times 2^floor(x)

        return unclamped

    whole = vfloor if x.dtype == types.float32 else vrint

    def impl(x, constants):
        k = constants[0]
        xc = vmin(vmax(x, k[0]), k[1])
        n = whole(xc)
        return scale2(poly(xc - n, k), n)

    return impl


def softplus_sigmoid(x, constants):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(softplus_sigmoid, inline="always")
def _softplus_sigmoid(x, constants):
    """(softplus(x), sigmoid(x)) as torch computes them (softplus threshold 20), from one w = exp(-|x|):
    softplus = max(x, 0) + log1p(w), sigmoid = 1 / (1 + w) or w / (1 + w). Where only softplus is used the
    division is dead code."""
    single = x.dtype == types.float32

    def impl(x, constants):
        one, zero, twenty, neg_log2e = constants[2]
        w = exp2(vabs(x) * neg_log2e, constants)
        s = one + w
        if single:
            log1p_w = w * _log1p_poly32(w, constants[1])
        else:  # libm's log, lane by lane; exact where 1 + w rounds to 1
            log1p_w = where(veq(s, one), w, vlog(s) * (w / (s - one)))
        softplus = where(vgt(x, twenty), x, vmax(x, zero) + log1p_w)
        sigmoid = where(vge(x, zero), one, w) / s
        return softplus, sigmoid

    return impl


def silu_parts(z, constants):  # pragma: no cover - replaced by the overload below inside numba
    raise NotImplementedError


@overload(silu_parts, inline="always")
def _silu_parts(z, constants):
    """(silu(z), d silu / dz)."""

    def impl(z, constants):
        one = constants[2][0]
        _, sig = softplus_sigmoid(z, constants)
        return z * sig, sig * (one + z * (one - sig))

    return impl


# ------------------------------------------------------------------------------------------- kernels
@njit(inline="always", **JIT)
def _unit(rows) -> bool:
    """Channels adjacent in memory (the last axis has stride 1): blocks load as vectors from the rows."""
    return rows.strides[rows.ndim - 1] == rows.itemsize


@njit(inline="always", **JIT)
def _prefetch_rows(rows, row, c0):
    prefetch(rows[row], c0)
    prefetch(rows[row], c0 + LANES)


@njit(inline="always", **JIT)
def _consecutive(steps, t0, n_steps) -> bool:
    """A whole chunk whose steps read consecutive positions, in increasing order."""
    if n_steps != CHUNK:
        return False
    for i in range(1, CHUNK):
        if steps[t0 + i] != steps[t0] + i:
            return False
    return True


@njit(inline="always", **JIT)
def _by_time(rows, steps, t0, n_steps, count) -> bool:
    """A whole chunk of a whole block whose values lie along time (unit stride over consecutive steps: a
    (batch, dim, L) tensor), moved as LANES x LANES blocks transposed in registers."""
    return count == BLOCK and rows.strides[0] == rows.itemsize and _consecutive(steps, t0, n_steps)


@njit(inline="always", **JIT)
def _tile_in(rows, steps, t0, n_steps, c0, channels, direct, ahead, tile):
    """tile[i, l] = rows[steps[t0 + i], c0 + l] for the chunk's steps and the block's channels. ``direct``: as
    vectors from the rows, prefetching those of step t + ``ahead``; otherwise channel by channel (consecutive
    in time, so in memory, where the channels are L apart), zero past the last channel."""
    if direct:
        length = steps.shape[0]
        for i in range(n_steps):
            t = t0 + i
            if 0 <= t + ahead < length:
                _prefetch_rows(rows, steps[t + ahead], c0)
            r = rows[steps[t]]
            vstore(tile, i * BLOCK, vload(r, c0))
            vstore(tile, i * BLOCK + LANES, vload(r, c0 + LANES))
        return
    count = min(BLOCK, channels - c0)
    if _by_time(rows, steps, t0, n_steps, count):
        t = steps[t0]
        for half in range(0, CHUNK, LANES):
            for lanes in range(0, BLOCK, LANES):
                transpose_in(rows, t + half, c0 + lanes, tile, half * BLOCK + lanes, BLOCK)
        _prefetch_chunk(rows, steps, t0 + ahead, c0, count)
        return
    for lane in range(BLOCK):
        if lane < count:
            c = c0 + lane
            for i in range(n_steps):
                tile[i * BLOCK + lane] = rows[steps[t0 + i], c]
        else:
            for i in range(n_steps):
                tile[i * BLOCK + lane] = 0
    _prefetch_chunk(rows, steps, t0 + ahead, c0, count)


@njit(inline="always", **JIT)
def _prefetch_chunk(rows, steps, t0, c0, count):
    """Prefetch a chunk's values of ``count`` channels from step t0, a cache line of steps apart (the lines a
    chunk of a time-contiguous channel spans: too many streams at once for the hardware's prefetcher)."""
    length = steps.shape[0]
    for s in range(0, CHUNK, LINE // rows.itemsize):
        if 0 <= t0 + s < length:
            row = steps[t0 + s]
            for lane in range(count):
                prefetch_item(rows, row, c0 + lane)


@njit(inline="always", **JIT)
def _tile_out(rows, steps, t0, n_steps, c0, channels, direct, tile, accumulate, ahead):
    """rows[steps[t0 + i], c0 + l] = tile[i, l] (or += with ``accumulate``), the channels that exist only:
    ``direct`` as vectors, otherwise channel by channel (and the lines of step t0 + ``ahead`` on prefetched)."""
    if direct:
        for i in range(n_steps):
            r, j = rows[steps[t0 + i]], i * BLOCK
            v0, v1 = vload(tile, j), vload(tile, j + LANES)
            if accumulate:
                v0, v1 = vload(r, c0) + v0, vload(r, c0 + LANES) + v1
            vstore(r, c0, v0)
            vstore(r, c0 + LANES, v1)
        return
    if not accumulate and _by_time(rows, steps, t0, n_steps, min(BLOCK, channels - c0)):
        t = steps[t0]
        for half in range(0, CHUNK, LANES):
            for lanes in range(0, BLOCK, LANES):
                transpose_out(tile, half * BLOCK + lanes, BLOCK, rows, t + half, c0 + lanes)
        _prefetch_chunk(rows, steps, t0 + ahead, c0, min(BLOCK, channels - c0))
        return
    for lane in range(min(BLOCK, channels - c0)):
        c = c0 + lane
        for i in range(n_steps):
            row = steps[t0 + i]
            if accumulate:
                rows[row, c] = rows[row, c] + tile[i * BLOCK + lane]
            else:
                rows[row, c] = tile[i * BLOCK + lane]
    _prefetch_chunk(rows, steps, t0 + ahead, c0, min(BLOCK, channels - c0))


@njit(inline="always", **JIT)
def _project_in(rows, steps, t0, n_steps, c0, proj_k, ahead, tile):
    """tile[i, l] = sum_r rows[steps[t0 + i], r] proj_k[r, c0 + l]: the chunk's delta projected from its
    low-rank rows as they are read (the projected delta is never written), the rows of step t + ``ahead``
    prefetched. ``proj_k`` is padded to whole blocks with zeros."""
    length, rank = steps.shape[0], proj_k.shape[0]
    for i in range(n_steps):
        t = t0 + i
        if 0 <= t + ahead < length:
            prefetch(rows[steps[t + ahead]], 0)
        r = rows[steps[t]]
        v = splat(r[0])
        a0, a1 = v * vload(proj_k[0], c0), v * vload(proj_k[0], c0 + LANES)
        for j in range(1, rank):
            v = splat(r[j])
            a0 = vfma(v, vload(proj_k[j], c0), a0)
            a1 = vfma(v, vload(proj_k[j], c0 + LANES), a1)
        vstore(tile, i * BLOCK, a0)
        vstore(tile, i * BLOCK + LANES, a1)


@njit(inline="always", **JIT)
def _load_chunk(rows_x, rows_d, proj_k, Bk, Ck, steps, t0, n_steps, c0, channels, direct_x, direct_d, bias0,
                bias1, softplus, ahead, rows_p, prefetch_p, scratch, bc, constants):  # fmt: skip
    """First pass over a chunk: the block's x and delta tiled into u and dt (delta projected from its low-rank
    rows by ``proj_k`` when that is not empty; prefetching rows of step t + ``ahead``, and those of ``rows_p``
    with ``prefetch_p``), then dt = softplus(delta + bias) (or delta + bias),
    dt u and d dt / d delta into ``scratch`` (dt, dt u, u, sigmoid; CHUNK x BLOCK each; an empty sigmoid tile:
    not kept, and its division not done), and B and C at the chunk's steps into ``bc`` (N x CHUNK each: loads
    that miss the cache are issued here, off the recurrence's path; as vectors where the chunk's positions are
    consecutive and adjacent in memory). The loops that compute read only tiles: a branch between rows and
    tiles in them halves the recurrence's speed."""
    length = steps.shape[0]
    dt_s, dtu_s, u_s, sig_s = scratch
    b_s, c_s = bc
    n_state = Bk.shape[0]
    keep_sigmoid = sig_s.shape[0] > 0
    _tile_in(rows_x, steps, t0, n_steps, c0, channels, direct_x, ahead, u_s)
    if proj_k.shape[0] > 0:
        _project_in(rows_d, steps, t0, n_steps, c0, proj_k, ahead, dt_s)
    else:
        _tile_in(rows_d, steps, t0, n_steps, c0, channels, direct_d, ahead, dt_s)
    if prefetch_p:
        for i in range(n_steps):
            t = t0 + i
            if 0 <= t + ahead < length:
                _prefetch_rows(rows_p, steps[t + ahead], c0)
    if _consecutive(steps, t0, n_steps) and _unit(Bk) and _unit(Ck):
        row = steps[t0]
        for n in range(n_state):
            b, c, o = Bk[n], Ck[n], n * CHUNK
            for i in range(0, CHUNK, LANES):
                vstore(b_s, o + i, vload(b, row + i))
                vstore(c_s, o + i, vload(c, row + i))
    else:
        for i in range(n_steps):
            row = steps[t0 + i]
            for n in range(n_state):
                b_s[n * CHUNK + i] = item(Bk, n, row)
                c_s[n * CHUNK + i] = item(Ck, n, row)
    for i in range(n_steps):
        j = i * BLOCK
        u0, u1 = vload(u_s, j), vload(u_s, j + LANES)
        r0, r1 = vload(dt_s, j) + bias0, vload(dt_s, j + LANES) + bias1
        if softplus:
            r0, s0 = softplus_sigmoid(r0, constants)
            r1, s1 = softplus_sigmoid(r1, constants)
            if keep_sigmoid:
                vstore(sig_s, j, s0)
                vstore(sig_s, j + LANES, s1)
        vstore(dt_s, j, r0)
        vstore(dt_s, j + LANES, r1)
        vstore(dtu_s, j, r0 * u0)
        vstore(dtu_s, j + LANES, r1 * u1)


@njit(inline="always", **JIT)
def _step_states(a2k, bc, i, c0, dt0, dt1, dtu0, dtu1, h, h_at, h_new, h_new_at, dec, dec_at, constants, y0, y1,
                 read):  # fmt: skip
    """h_new = exp(dt A) h + dt u B for every state of the block, B the chunk's step i (h and h_new may be the
    same buffer), the decays exp(dt A) written to ``dec`` when it is not empty. With ``read``, y + <C, h_new>
    is read off the new states as they are made (not loaded back) and returned, else y as given."""
    c1 = c0 + LANES
    keep = dec.shape[0] > 0
    b_s, c_s = bc
    n_state = a2k.shape[0]
    for n in range(n_state):
        an, bn, o = a2k[n], splat(b_s[n * CHUNK + i]), n * BLOCK
        e0 = exp2(dt0 * vload(an, c0), constants)
        e1 = exp2(dt1 * vload(an, c1), constants)
        h0 = vfma(e0, vload(h, h_at + o), dtu0 * bn)
        h1 = vfma(e1, vload(h, h_at + o + LANES), dtu1 * bn)
        vstore(h_new, h_new_at + o, h0)
        vstore(h_new, h_new_at + o + LANES, h1)
        if keep:
            vstore(dec, dec_at + o, e0)
            vstore(dec, dec_at + o + LANES, e1)
        if read:
            cn = splat(c_s[n * CHUNK + i])
            y0, y1 = vfma(cn, h0, y0), vfma(cn, h1, y1)
    return y0, y1


@njit(nogil=True, **JIT)
def scan_forward(x, delta, z, A2, B, C, D, bias, proj, order, softplus, first, last, out):
    """``out`` for tasks first .. last - 1 (layouts in the module docstring)."""
    n_seq, length = order.shape
    channels = out.shape[3]
    blocks = -(-channels // BLOCK)
    shared, has_z = x.shape[1] == 1, z.shape[0] > 0
    unit_x, unit_d, unit_z, unit_o = _unit(x), _unit(delta), _unit(z), _unit(out)
    dtype = x.dtype
    constants = math_constants(x)
    scratch = (
        np.empty(CHUNK * BLOCK, dtype=dtype),  # dt
        np.empty(CHUNK * BLOCK, dtype=dtype),  # dt u
        np.empty(CHUNK * BLOCK, dtype=dtype),  # u
        np.empty(0, dtype=dtype),  # sigmoid: not kept in the forward
    )
    dt_s, dtu_s, u_s, _ = scratch
    y_s = np.empty(CHUNK * BLOCK, dtype=dtype)
    z_s = np.empty(CHUNK * BLOCK, dtype=dtype)
    n_state = A2.shape[1]
    bc = (np.empty(n_state * CHUNK, dtype=dtype), np.empty(n_state * CHUNK, dtype=dtype))  # B, C of a chunk
    h = np.empty(n_state * BLOCK, dtype=dtype)
    none = np.empty(0, dtype=dtype)
    no_proj = np.empty((0, 0), dtype=dtype)
    for task in range(first, last):
        b, c0 = task // blocks, (task % blocks) * BLOCK
        full = c0 + BLOCK <= channels
        direct_x, direct_d, direct_z, direct_o = full and unit_x, full and unit_d, full and unit_z, full and unit_o
        for k in range(n_seq):
            kx = 0 if shared else k
            accumulate = shared and k > 0  # the cross scan: outputs of the K sequences summed, in order
            rows_x, rows_d, rows_o, steps = x[b, kx], delta[b, k], out[b, kx], order[k]
            rows_z = z[b, k] if has_z else rows_d
            bias0, bias1 = vload(bias[k], c0), vload(bias[k], c0 + LANES)
            D0, D1 = vload(D[k], c0), vload(D[k], c0 + LANES)
            a2k, Bk, Ck = A2[k], B[b, k], C[b, k]
            proj_k = proj[k] if proj.shape[0] > 0 else no_proj
            h[:] = 0
            for t0 in range(0, length, CHUNK):
                n_steps = min(CHUNK, length - t0)
                _load_chunk(rows_x, rows_d, proj_k, Bk, Ck, steps, t0, n_steps, c0, channels, direct_x, direct_d,
                            bias0, bias1, softplus, AHEAD, rows_o, accumulate and direct_o, scratch, bc,
                            constants)  # fmt: skip
                if has_z:
                    _tile_in(rows_z, steps, t0, n_steps, c0, channels, direct_z, AHEAD, z_s)
                for i in range(n_steps):
                    j = i * BLOCK
                    dt0, dt1 = vload(dt_s, j), vload(dt_s, j + LANES)
                    y0, y1 = D0 * vload(u_s, j), D1 * vload(u_s, j + LANES)
                    y0, y1 = _step_states(a2k, bc, i, c0, dt0, dt1, vload(dtu_s, j), vload(dtu_s, j + LANES), h, 0,
                                          h, 0, none, 0, constants, y0, y1, True)  # fmt: skip
                    vstore(y_s, j, y0)
                    vstore(y_s, j + LANES, y1)
                if has_z:
                    for i in range(n_steps):
                        j = i * BLOCK
                        vstore(y_s, j, vload(y_s, j) * silu_parts(vload(z_s, j), constants)[0])
                        vstore(y_s, j + LANES, vload(y_s, j + LANES) * silu_parts(vload(z_s, j + LANES), constants)[0])
                _tile_out(rows_o, steps, t0, n_steps, c0, channels, direct_o, y_s, accumulate, AHEAD)


# The backward's own tiles (gout, z, gz, gdelta, gx) move through called copies, not inlined ones: inlined at its
# five call sites they made the backward's compile take 64 s in float64 (40 s called; the scan's timings
# unchanged within noise: the calls are once per chunk, outside the recurrence)
_tile_in_call = njit(**JIT)(_tile_in.py_func)
_tile_out_call = njit(**JIT)(_tile_out.py_func)


@njit(nogil=True, **JIT)
def scan_backward(
    gout, x, delta, z, A2, A, B, C, D, bias, order, softplus, first, last, gx, gdelta, gz, gA, gB, gC, gD, gbias
):
    """Gradients of sum(gout * out) for tasks first .. last - 1. A task (batch b, block) writes gA[b, k],
    gD[b, k] and gbias[b, k] at its channels (the caller sums them over the batch) and gB[b, block, k],
    gC[b, block, k]: (N, P) sums over its channels (the caller sums them over the blocks).

    The states are recomputed: a forward sweep keeps the state at the start of every chunk, and the
    backward sweep recomputes each chunk's states and decays from there before running it in reverse."""
    n_seq, length = order.shape
    n_state = A2.shape[1]
    channels = delta.shape[3]
    blocks = -(-channels // BLOCK)
    shared, has_z = x.shape[1] == 1, z.shape[0] > 0
    unit_x, unit_d, unit_z, unit_g = _unit(x), _unit(delta), _unit(z), _unit(gout)
    unit_gx, unit_gd, unit_gz = _unit(gx), _unit(gdelta), _unit(gz)
    dtype = x.dtype
    width = n_state * BLOCK  # one set of states of a block
    chunks = -(-length // CHUNK)
    scratch = (
        np.empty(CHUNK * BLOCK, dtype=dtype),  # dt
        np.empty(CHUNK * BLOCK, dtype=dtype),  # dt u
        np.empty(CHUNK * BLOCK, dtype=dtype),  # u
        np.empty(CHUNK * BLOCK, dtype=dtype),  # d dt / d delta (sigmoid)
    )
    dt_s, dtu_s, u_s, sig_s = scratch
    gy_s = np.empty(CHUNK * BLOCK, dtype=dtype)  # dL/dy (gout tiled here first where not read directly)
    # tiles of z, gz, gdelta and gx, where they are not read or written directly
    z_s, gz_s = np.empty(CHUNK * BLOCK, dtype=dtype), np.empty(CHUNK * BLOCK, dtype=dtype)
    gd_s, gx_s = np.empty(CHUNK * BLOCK, dtype=dtype), np.empty(CHUNK * BLOCK, dtype=dtype)
    starts = np.empty(chunks * width, dtype=dtype)  # the state entering every chunk
    hs = np.empty((CHUNK + 1) * width, dtype=dtype)  # hs[i] enters step t0 + i, hs[i + 1] leaves it
    dec = np.empty(CHUNK * width, dtype=dtype)  # exp(dt A) of every step of the chunk
    h = np.empty(width, dtype=dtype)
    carry = np.empty(width, dtype=dtype)  # dL/dh_t through h_{t+1}
    gA_acc = np.empty(width, dtype=dtype)
    bc = (np.empty(n_state * CHUNK, dtype=dtype), np.empty(n_state * CHUNK, dtype=dtype))  # B, C of a chunk
    b_s, c_s = bc
    none = np.empty(0, dtype=dtype)
    constants = math_constants(x)
    no_proj = np.empty((0, 0), dtype=dtype)  # the backward reads the projected delta
    zero = np.zeros(1, dtype=dtype)[0]
    for task in range(first, last):
        b, blk = task // blocks, task % blocks
        c0 = blk * BLOCK
        c1 = c0 + LANES
        full = c0 + BLOCK <= channels
        direct_x, direct_d, direct_z, direct_g = full and unit_x, full and unit_d, full and unit_z, full and unit_g
        direct_gx, direct_gd, direct_gz = full and unit_gx, full and unit_gd, full and unit_gz
        for k in range(n_seq):
            kx = 0 if shared else k
            accumulate = shared and k > 0
            rows_x, rows_d, rows_g, rows_gx, steps = x[b, kx], delta[b, k], gout[b, kx], gx[b, kx], order[k]
            rows_gd = gdelta[b, k]
            rows_z = z[b, k] if has_z else rows_d
            rows_gz = gz[b, k] if has_z else rows_d
            bias0, bias1, D0, D1 = vload(bias[k], c0), vload(bias[k], c1), vload(D[k], c0), vload(D[k], c1)
            a2k, ak, Bk, Ck = A2[k], A[k], B[b, k], C[b, k]
            # forward sweep: the state entering every chunk
            h[:] = 0
            for ci in range(chunks):
                t0 = ci * CHUNK
                n_steps = min(CHUNK, length - t0)
                starts[ci * width : (ci + 1) * width] = h
                _load_chunk(rows_x, rows_d, no_proj, Bk, Ck, steps, t0, n_steps, c0, channels, direct_x, direct_d,
                            bias0, bias1, softplus, AHEAD, rows_g, False, scratch, bc, constants)  # fmt: skip
                for i in range(n_steps):
                    j = i * BLOCK
                    _step_states(a2k, bc, i, c0, vload(dt_s, j), vload(dt_s, j + LANES), vload(dtu_s, j),
                                 vload(dtu_s, j + LANES), h, 0, h, 0, none, 0, constants, D0, D1, False)  # fmt: skip
            # backward sweep, chunk by chunk from the last
            carry[:] = 0
            gA_acc[:] = 0
            gD0 = gD1 = gbias0 = gbias1 = splat(zero)
            for ci in range(chunks - 1, -1, -1):
                t0 = ci * CHUNK
                n_steps = min(CHUNK, length - t0)
                # rows of the chunk before are prefetched while this one loads
                _load_chunk(rows_x, rows_d, no_proj, Bk, Ck, steps, t0, n_steps, c0, channels, direct_x, direct_d,
                            bias0, bias1, softplus, -CHUNK, rows_g, False, scratch, bc, constants)  # fmt: skip
                _tile_in_call(rows_g, steps, t0, n_steps, c0, channels, direct_g, -CHUNK, gy_s)
                if has_z:
                    _tile_in_call(rows_z, steps, t0, n_steps, c0, channels, direct_z, -CHUNK, z_s)
                hs[:width] = starts[ci * width : (ci + 1) * width]
                for i in range(n_steps):
                    j = i * BLOCK
                    dt0, dt1 = vload(dt_s, j), vload(dt_s, j + LANES)
                    dtu0, dtu1 = vload(dtu_s, j), vload(dtu_s, j + LANES)
                    _step_states(a2k, bc, i, c0, dt0, dt1, dtu0, dtu1, hs, i * width, hs, (i + 1) * width, dec,
                                 i * width, constants, D0, D1, False)  # fmt: skip
                # dL/dy: gout, through the z gate when there is one (out = y silu(z), y = <C, h> + D u)
                for i in range(n_steps):
                    t, j = t0 + i, i * BLOCK
                    row = steps[t]
                    g0, g1 = vload(gy_s, j), vload(gy_s, j + LANES)
                    if has_z:
                        y0, y1 = D0 * vload(u_s, j), D1 * vload(u_s, j + LANES)
                        for n in range(n_state):
                            cn, o = splat(c_s[n * CHUNK + i]), (i + 1) * width + n * BLOCK
                            y0 = vfma(cn, vload(hs, o), y0)
                            y1 = vfma(cn, vload(hs, o + LANES), y1)
                        z0, z1 = vload(z_s, j), vload(z_s, j + LANES)
                        silu0, dsilu0 = silu_parts(z0, constants)
                        silu1, dsilu1 = silu_parts(z1, constants)
                        vstore(gz_s, j, g0 * y0 * dsilu0)
                        vstore(gz_s, j + LANES, g1 * y1 * dsilu1)
                        g0, g1 = g0 * silu0, g1 * silu1
                    vstore(gy_s, j, g0)
                    vstore(gy_s, j + LANES, g1)
                if has_z:
                    _tile_out_call(rows_gz, steps, t0, n_steps, c0, channels, direct_gz, gz_s, False, -CHUNK)
                # dL/dh_t = C_t gy_t + exp(dt_{t+1} A) dL/dh_{t+1}, backwards in time
                for i in range(n_steps - 1, -1, -1):
                    t, j = t0 + i, i * BLOCK
                    row = steps[t]
                    gy0, gy1 = vload(gy_s, j), vload(gy_s, j + LANES)
                    dt0, dt1 = vload(dt_s, j), vload(dt_s, j + LANES)
                    dtu0, dtu1 = vload(dtu_s, j), vload(dtu_s, j + LANES)
                    sum_b0 = sum_b1 = sum_x0 = sum_x1 = splat(zero)
                    for n in range(n_state):
                        o = n * BLOCK
                        h_in, h_out, d_at = i * width + o, (i + 1) * width + o, i * width + o
                        bn, cn = splat(b_s[n * CHUNK + i]), splat(c_s[n * CHUNK + i])
                        gh0 = vfma(gy0, cn, vload(carry, o))
                        gh1 = vfma(gy1, cn, vload(carry, o + LANES))
                        gC[b, blk, k, n, row] = hsum(vfma(gy1, vload(hs, h_out + LANES), gy0 * vload(hs, h_out)))
                        gB[b, blk, k, n, row] = hsum(vfma(gh1, dtu1, gh0 * dtu0))
                        e0, e1 = vload(dec, d_at), vload(dec, d_at + LANES)
                        # dL/d(dt A) = dL/dh_t exp(dt A) h_{t-1}
                        x0 = gh0 * e0 * vload(hs, h_in)
                        x1 = gh1 * e1 * vload(hs, h_in + LANES)
                        vstore(gA_acc, o, vfma(x0, dt0, vload(gA_acc, o)))
                        vstore(gA_acc, o + LANES, vfma(x1, dt1, vload(gA_acc, o + LANES)))
                        an = ak[n]
                        sum_x0 = vfma(x0, vload(an, c0), sum_x0)
                        sum_x1 = vfma(x1, vload(an, c1), sum_x1)
                        sum_b0 = vfma(gh0, bn, sum_b0)
                        sum_b1 = vfma(gh1, bn, sum_b1)
                        vstore(carry, o, e0 * gh0)
                        vstore(carry, o + LANES, e1 * gh1)
                    u0, u1 = vload(u_s, j), vload(u_s, j + LANES)
                    gdt0, gdt1 = vfma(u0, sum_b0, sum_x0), vfma(u1, sum_b1, sum_x1)
                    if softplus:
                        gdt0, gdt1 = gdt0 * vload(sig_s, j), gdt1 * vload(sig_s, j + LANES)
                    gbias0, gbias1 = gbias0 + gdt0, gbias1 + gdt1
                    gD0, gD1 = vfma(gy0, u0, gD0), vfma(gy1, u1, gD1)
                    vstore(gd_s, j, gdt0)
                    vstore(gd_s, j + LANES, gdt1)
                    gu0, gu1 = vfma(gy0, D0, dt0 * sum_b0), vfma(gy1, D1, dt1 * sum_b1)
                    vstore(gx_s, j, gu0)
                    vstore(gx_s, j + LANES, gu1)
                _tile_out_call(rows_gd, steps, t0, n_steps, c0, channels, direct_gd, gd_s, False, -CHUNK)
                _tile_out_call(rows_gx, steps, t0, n_steps, c0, channels, direct_gx, gx_s, accumulate, -CHUNK)
            for n in range(n_state):
                gA[b, k, n, c0 : c0 + BLOCK] = gA_acc[n * BLOCK : (n + 1) * BLOCK]
            vstore(gD[b, k], c0, gD0)
            vstore(gD[b, k], c1, gD1)
            vstore(gbias[b, k], c0, gbias0)
            vstore(gbias[b, k], c1, gbias1)


FMA_CHAINS = 12  # independent FMA chains: more than latency x units (4 x 2 on current x86 cores) in flight


@njit(nogil=True, **JIT)
def fma_chains(values, iterations):
    """``iterations`` rounds of FMA_CHAINS independent vector FMAs (x = x a + b): the rate the vector unit
    reaches with nothing else in its way. ``values`` holds a, b and the start; the sum comes back in it (so
    that nothing is dead code)."""
    a, b, x = splat(values[0]), splat(values[1]), splat(values[2])
    x0 = x1 = x2 = x3 = x4 = x5 = x6 = x7 = x8 = x9 = x10 = x11 = x
    for _ in range(iterations):
        x0, x1, x2, x3 = vfma(x0, a, b), vfma(x1, a, b), vfma(x2, a, b), vfma(x3, a, b)
        x4, x5, x6, x7 = vfma(x4, a, b), vfma(x5, a, b), vfma(x6, a, b), vfma(x7, a, b)
        x8, x9, x10, x11 = vfma(x8, a, b), vfma(x9, a, b), vfma(x10, a, b), vfma(x11, a, b)
    vstore(values, 0, ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11)))
