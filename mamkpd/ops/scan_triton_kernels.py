"""Triton kernels of the selective scan (forward, backward) and of its four-direction cross form.

Imported only by :mod:`.scan_triton`, lazily: ``triton.jit`` decides at definition time whether the kernels
are compiled for a GPU or run by Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors).

One program owns ``BLOCK_D`` channels of one (batch, k) pair, k the B/C group or, in the cross form
(``CROSS``), the scan direction, and runs the time loop one step after another. Channels lie across the lanes
(a warp's 32 lanes, 32 channels, one channel a thread when BLOCK_D = 32 x num_warps); the states are an
(N, BLOCK_D) tile whose N values of a channel sit in the channel's own thread (built from channel vectors, see
:func:`_state_tile`), so the sum over the states for y is in registers: compiled for sm_90, the forward's loop
has no shuffle and no barrier. B_t and C_t (N values) are loaded once a step by every thread (the same
address across a warp). Nothing is scanned across threads: the parallelism is batch x k x channel blocks
(49,152 threads at MamKPD-B's stage 1, batch 64). The next step's u and delta are loaded before a step's
arithmetic, so that their latency overlaps it.

Every tensor is read through its strides (batch, k, channel, step position), so x, delta, B and C are read
in the layout the model holds them (SS2D: x and delta channels-last, B and C views of x_proj's output):
with channels innermost, one step's loads of a block are one contiguous row. The decay is
``exp2(delta * A log2(e))``, with A scaled once on the host.

The cross form walks direction k's positions (row-major, column-major, both reversed) by an outer and an
inner index moved one step at a time, no division a step. Each direction writes its own output rows (the
caller sums the four), so the merged output needs no atomics and no zero fill.

The backward kernel is one launch that starts from the state at the start of every ``CHUNK`` steps: the
forward keeps them when a gradient will be taken (``KEEP_STATES``: 2 bytes a channel-step, fp32 states every
16 steps), otherwise the backward first computes them in a forward sweep. Then, chunk by chunk from the end,
it recomputes the chunk's states (kept in a small per-channel scratch buffer, re-used by every chunk, so it
stays in cache) and runs the reverse recurrence over the chunk.

The loops are ``while`` loops on a counter, not ``range(length)``: Triton 3.6's interpreter (not 3.9's)
makes a scalar argument a Python int by ``int()`` of a one-element array, which numpy 2 refuses
("only 0-dimensional arrays can be converted to Python scalars"), while a comparison's truth value passes.
"""

# no `from __future__ import annotations`: Triton 3.0's interpreter finds constexpr arguments by comparing
# annotations with tl.constexpr, which string annotations never equal
import triton
import triton.language as tl


@triton.jit
def _softplus(x):
    # log1p(exp(x)) with PyTorch's threshold of 20; far below zero log(1 + e^x) would round to 0, use e^x
    return tl.where(x > 20.0, x, tl.where(x < -15.0, tl.exp(x), tl.log(1.0 + tl.exp(x))))


@triton.jit
def _program(dim_g, BLOCK_D: tl.constexpr):
    """This program's k, batch b, channels d of the group (mask dmask) and ch = k * dim_g + d (A, D, bias)."""
    k = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    return k, b, d, d < dim_g, k * dim_g + d


@triton.jit
def _walk(t, k, length, height, width, CROSS: tl.constexpr):
    """Where step t of k lies: (outer index i, inner index j, inner extent m, outer stride so, inner stride
    si, s) with position i * so + j * si; s (+1 or -1) moves j one step forward in time."""
    if CROSS:
        cols = k % 2 == 1  # directions 1 and 3 walk the columns
        back = k >= 2  # directions 2 and 3 run backwards
        m = tl.where(cols, height, width)
        so = tl.where(cols, 1, width)
        si = tl.where(cols, width, 1)
        tt = tl.where(back, length - 1 - t, t)
        s = tl.where(back, -1, 1)
    else:
        # tensors (k's), not constants: the loops re-assign these
        m = length + 0 * k
        so = 0 * k
        si = 1 + 0 * k
        tt = t + 0 * k
        s = 1 + 0 * k
    return tt // m, tt % m, m, so, si, s


@triton.jit
def _advance(i, j, m, s):
    """The indices of the next step (s = +1 or -1), wrapping the inner index."""
    j = j + s
    over = j >= m
    under = j < 0
    i = i + tl.where(over, 1, tl.where(under, -1, 0))
    j = tl.where(over, 0, tl.where(under, m - 1, j))
    return i, j


@triton.jit
def _delta(raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ACC: tl.constexpr):
    """(raw delta + bias, effective delta) from the loaded raw delta."""
    raw = raw.to(ACC)
    if HAS_BIAS:
        raw = raw + bias
    dl = raw
    if SOFTPLUS:
        dl = _softplus(raw)
    return raw, dl


@triton.jit
def _step_inputs(u_row, delta_row, B_row, C_row, p, su_l, sd_l, sB_l, sC_l, dmask, nmask, bias,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """One step's u, raw delta (+ bias), effective delta (BLOCK_D each), B and C (NP each) at position p."""
    u = tl.load(u_row + p * su_l, mask=dmask, other=0.0).to(ACC)
    raw, dl = _delta(tl.load(delta_row + p * sd_l, mask=dmask, other=0.0), bias, HAS_BIAS, SOFTPLUS, ACC)
    Bt = tl.load(B_row + p * sB_l, mask=nmask, other=0.0).to(ACC)
    Ct = tl.load(C_row + p * sC_l, mask=nmask, other=0.0).to(ACC)
    return u, raw, dl, Bt, Ct


@triton.jit
def _row(ptr, b, k, index, s_b, s_k, s_i):
    """Pointers to step 0 of batch b, k and ``index`` (channels or states) of a strided tensor."""
    return ptr + b * s_b + k * s_k + index * s_i


@triton.jit
def _setup(u_ptr, delta_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, su_b, su_k, su_d, sd_b, sd_k, sd_d,
           sB_b, sB_k, sB_n, sC_b, sC_k, sC_n, sz_b, sz_k, sz_d, dim_g, N: tl.constexpr, NP: tl.constexpr,
           BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """What both kernels start from: the program's k, b, channels d (mask, ch = k * dim_g + d), states n (mask),
    the A log2(e) tile, delta_bias and D (zeros where absent), and the rows of u, delta, z, B and C."""
    k, b, d, dmask, ch = _program(dim_g, BLOCK_D)
    n = tl.arange(0, NP)
    nmask = n < N
    A2 = _state_tile(A2_ptr, ch, dmask, N, NP, BLOCK_D, ACC)
    bias = tl.zeros([BLOCK_D], dtype=ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=dmask, other=0.0).to(ACC)
    Dv = tl.zeros([BLOCK_D], dtype=ACC)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=dmask, other=0.0).to(ACC)
    u_row = _row(u_ptr, b, k, d, su_b, su_k, su_d)
    delta_row = _row(delta_ptr, b, k, d, sd_b, sd_k, sd_d)
    z_row = _row(z_ptr, b, k, d, sz_b, sz_k, sz_d)
    B_row = _row(B_ptr, b, k, n, sB_b, sB_k, sB_n)
    C_row = _row(C_ptr, b, k, n, sC_b, sC_k, sC_n)
    return k, b, d, dmask, ch, n, nmask, A2, bias, Dv, u_row, delta_row, z_row, B_row, C_row


@triton.jit
def _state_tile(ptr, ch, dmask, N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    """The (NP, BLOCK_D) tile of a contiguous (channels, N) parameter, 0 past N, assembled from one channel
    vector a state: a 2-d load would be laid out along its contiguous N axis, and the loop's states with it
    (states across lanes, shuffles to sum them); built from channel vectors it keeps a channel's states in
    its thread."""
    n = tl.arange(0, NP)
    tile = tl.zeros([NP, BLOCK_D], dtype=ACC)
    for i in tl.static_range(N):
        column = tl.load(ptr + ch * N + i, mask=dmask, other=0.0).to(ACC)
        tile = tl.where(n[:, None] == i, column[None, :], tile)
    return tile


@triton.jit
def _slot_rows(ptr, b, k, d, n, dim_g):
    """This program's (NP, BLOCK_D) tile in a (slot, NP, rows) fp32 buffer, rows = batch * groups * dim_g with
    the channels innermost (as the states' tiles are laid out): (pointers of slot 0, stride between slots)."""
    n_rows = tl.num_programs(2) * tl.num_programs(1) * dim_g
    row = (b * tl.num_programs(1) + k) * dim_g + d
    return ptr + n[:, None] * n_rows + row[None, :], n.shape[0] * n_rows


@triton.jit
def scan_fwd_kernel(
    u_ptr, delta_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr,
    su_b, su_k, su_d, su_l, sd_b, sd_k, sd_d, sd_l, sB_b, sB_k, sB_n, sB_l, sC_b, sC_k, sC_n, sC_l,
    sz_b, sz_k, sz_d, sz_l, so_b, so_k, so_d, so_l,
    dim_g, length, height, width,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CROSS: tl.constexpr, ACC: tl.constexpr,
    KEEP_STATES: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """out = scan (plus D u, times silu(z)). A2: A log2(e), contiguous (k * dim_g + d, N), in ACC. With
    ``KEEP_STATES`` (training) also the state before every ``CHUNK``-th step, into ``states`` (n_chunks, NP,
    rows) in ACC: the backward starts from them instead of sweeping the sequence again."""
    k, b, d, dmask, ch, n, nmask, A2, bias, Dv, u_row, delta_row, z_row, B_row, C_row = _setup(
        u_ptr, delta_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, su_b, su_k, su_d, sd_b, sd_k, sd_d,
        sB_b, sB_k, sB_n, sC_b, sC_k, sC_n, sz_b, sz_k, sz_d, dim_g, N, NP, BLOCK_D, HAS_D, HAS_BIAS, ACC,
    )  # fmt: skip
    out_row = _row(out_ptr, b, k, d, so_b, so_k, so_d)
    state_rows, slot = _slot_rows(states_ptr, b, k, d, n, dim_g)
    tile_mask = nmask[:, None] & dmask[None, :]
    i, j, m, so, si, s = _walk(0, k, length, height, width, CROSS)
    h = tl.zeros([NP, BLOCK_D], dtype=ACC)
    t = tl.full([], 0, tl.int32)
    p = i * so + j * si
    u_in = tl.load(u_row + p * su_l, mask=dmask, other=0.0)
    delta_in = tl.load(delta_row + p * sd_l, mask=dmask, other=0.0)
    while t < length:  # not range(length): see the module's docstring
        # in training, a chunk at a time, its start state kept (a branch a chunk, not a step)
        stop = length + 0 * t
        if KEEP_STATES:
            tl.store(state_rows + (t // CHUNK) * slot, h, mask=tile_mask)
            stop = tl.minimum(t + CHUNK, length)
        while t < stop:
            # the next step's u and delta are loaded before this step's arithmetic and used (converted) only in the
            # next iteration, so that their latency overlaps it. B_t and C_t are loaded here, not carried: a
            # carried (N,) vector would be laid out across threads and gathered through shared memory each step
            Bt = tl.load(B_row + p * sB_l, mask=nmask, other=0.0).to(ACC)
            Ct = tl.load(C_row + p * sC_l, mask=nmask, other=0.0).to(ACC)
            i, j = _advance(i, j, m, s)
            p_next = i * so + j * si
            # a vector: the interpreter's `&` of a vector and a scalar mask yields a dtype tl.load refuses
            more = dmask & (t + 1 + 0 * d < length)
            u_next = tl.load(u_row + p_next * su_l, mask=more, other=0.0)
            delta_next = tl.load(delta_row + p_next * sd_l, mask=more, other=0.0)
            u = u_in.to(ACC)
            _, dl = _delta(delta_in, bias, HAS_BIAS, SOFTPLUS, ACC)
            h = tl.exp2(dl[None, :] * A2) * h + Bt[:, None] * (dl * u)[None, :]
            y = tl.sum(h * Ct[:, None], axis=0) + Dv * u
            if HAS_Z:
                z = tl.load(z_row + p * sz_l, mask=dmask, other=0.0).to(ACC)
                y = y * z * tl.sigmoid(z)
            tl.store(out_row + p * so_l, y.to(out_ptr.dtype.element_ty), mask=dmask)
            u_in, delta_in, p = u_next, delta_next, p_next
            t += 1


@triton.jit
def scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, gout_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr, states_ptr, hbuf_ptr,
    su_b, su_k, su_d, su_l, sd_b, sd_k, sd_d, sd_l, sB_b, sB_k, sB_n, sB_l, sC_b, sC_k, sC_n, sC_l,
    sz_b, sz_k, sz_d, sz_l, sg_b, sg_k, sg_d, sg_l, sdu_b, sdu_k, sdu_d, sdu_l, sdd_b, sdd_k, sdd_d, sdd_l,
    sdz_b, sdz_k, sdz_d, sdz_l,
    dim_g, length, height, width, n_chunks,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CROSS: tl.constexpr, ACC: tl.constexpr,
    STATES_GIVEN: tl.constexpr,
):  # fmt: skip
    """Gradients in one launch, from the end of the sequence to its start.

    With a_t = exp(delta_t A), b_t = delta_t u_t B_t, h_t = a_t h_{t-1} + b_t, y_t = <C_t, h_t> and g_t the
    gradient of y_t (after the z gate), G_t = dL/dh_t = C_t g_t + a_{t+1} G_{t+1} (a reverse recurrence),
    dL/dC_t = g_t h_t, dL/db_t = G_t, dL/d(delta_t A) = G_t a_t h_{t-1} = G_t (h_t - b_t).
    dB and dC are summed over the channels of a block in registers and over blocks with atomics (fp32
    buffers, N values a step); dA, dD and d(delta_bias) are summed over time here (per (batch, channel)
    partial sums) and over the batch by the caller. ``states`` (n_chunks, NP, rows), rows = batch * groups *
    dim_g, holds the state before every ``CHUNK``-th step: the forward's (``STATES_GIVEN``), else this kernel
    computes them first, in a forward sweep. ``hbuf`` (CHUNK, NP, rows) is scratch; both in ACC.
    """
    k, b, d, dmask, ch, n, nmask, A2, bias, Dv, u_row, delta_row, z_row, B_row, C_row = _setup(
        u_ptr, delta_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, su_b, su_k, su_d, sd_b, sd_k, sd_d,
        sB_b, sB_k, sB_n, sC_b, sC_k, sC_n, sz_b, sz_k, sz_d, dim_g, N, NP, BLOCK_D, HAS_D, HAS_BIAS, ACC,
    )  # fmt: skip
    tile_mask = nmask[:, None] & dmask[None, :]
    A = _state_tile(A_ptr, ch, dmask, N, NP, BLOCK_D, ACC)
    g_row = _row(gout_ptr, b, k, d, sg_b, sg_k, sg_d)
    du_row = _row(du_ptr, b, k, d, sdu_b, sdu_k, sdu_d)
    dd_row = _row(ddelta_ptr, b, k, d, sdd_b, sdd_k, sdd_d)
    dz_row = _row(dz_ptr, b, k, d, sdz_b, sdz_k, sdz_d)
    bk = b * tl.num_programs(1) + k
    dBC_row = bk * N * length + n * length  # dB, dC: contiguous (batch, groups, N, L), at storage positions
    row = bk * dim_g + d  # this program's channels among all (batch, k, channel) rows
    state_rows, slot = _slot_rows(states_ptr, b, k, d, n, dim_g)
    hbuf_rows, hslot = _slot_rows(hbuf_ptr, b, k, d, n, dim_g)

    if not STATES_GIVEN:  # the forward sweep: the state at the start of every chunk
        i, j, m, so, si, s = _walk(0, k, length, height, width, CROSS)
        h = tl.zeros([NP, BLOCK_D], dtype=ACC)
        t = tl.full([], 0, tl.int32)
        while t < length:
            if t % CHUNK == 0:
                tl.store(state_rows + (t // CHUNK) * slot, h, mask=tile_mask)
            p = i * so + j * si
            u, _, dl, Bt, _ = _step_inputs(u_row, delta_row, B_row, C_row, p, su_l, sd_l, sB_l, sC_l, dmask,
                                           nmask, bias, HAS_BIAS, SOFTPLUS, ACC)  # fmt: skip
            h = tl.exp2(dl[None, :] * A2) * h + Bt[:, None] * (dl * u)[None, :]
            i, j = _advance(i, j, m, s)
            t += 1
        # the scratch buffers are written and read by the same program: order its threads' accesses
        tl.debug_barrier()

    G = tl.zeros([NP, BLOCK_D], dtype=ACC)  # dL/dh of the step after the current one
    a_next = tl.zeros([NP, BLOCK_D], dtype=ACC)  # its decay (G is 0 there at the end)
    dA = tl.zeros([NP, BLOCK_D], dtype=ACC)
    dD = tl.zeros([BLOCK_D], dtype=ACC)
    dbias = tl.zeros([BLOCK_D], dtype=ACC)
    c = tl.full([], 0, tl.int32) + n_chunks - 1
    while c >= 0:
        # the chunk's states, from its stored start state, into the scratch buffer
        start = c * CHUNK
        stop = tl.minimum(start + CHUNK, length)
        i, j, m, so, si, s = _walk(start, k, length, height, width, CROSS)
        h = tl.load(state_rows + c * slot, mask=tile_mask, other=0.0)
        t = start
        while t < stop:
            p = i * so + j * si
            u, _, dl, Bt, _ = _step_inputs(u_row, delta_row, B_row, C_row, p, su_l, sd_l, sB_l, sC_l, dmask,
                                           nmask, bias, HAS_BIAS, SOFTPLUS, ACC)  # fmt: skip
            h = tl.exp2(dl[None, :] * A2) * h + Bt[:, None] * (dl * u)[None, :]
            tl.store(hbuf_rows + (t - start) * hslot, h, mask=tile_mask)
            i, j = _advance(i, j, m, s)
            t += 1
        tl.debug_barrier()
        # the reverse recurrence over the chunk
        i, j, m, so, si, s = _walk(stop - 1, k, length, height, width, CROSS)
        t = stop - 1
        while t >= start:
            p = i * so + j * si
            u, raw, dl, Bt, Ct = _step_inputs(u_row, delta_row, B_row, C_row, p, su_l, sd_l, sB_l, sC_l, dmask,
                                              nmask, bias, HAS_BIAS, SOFTPLUS, ACC)  # fmt: skip
            h = tl.load(hbuf_rows + (t - start) * hslot, mask=tile_mask, other=0.0)
            gout = tl.load(g_row + p * sg_l, mask=dmask, other=0.0).to(ACC)
            g = gout
            if HAS_Z:
                z = tl.load(z_row + p * sz_l, mask=dmask, other=0.0).to(ACC)
                z_sig = tl.sigmoid(z)
                g = gout * z * z_sig
            G = a_next * G + Ct[:, None] * g[None, :]
            a_next = tl.exp2(dl[None, :] * A2)
            du_t = dl * u
            G_decay = G * (h - Bt[:, None] * du_t[None, :])  # G_t a_t h_{t-1}
            dA += G_decay * dl[None, :]
            GB = tl.sum(G * Bt[:, None], axis=0)
            ddl = tl.sum(G_decay * A, axis=0) + u * GB
            du = dl * GB + Dv * g
            if HAS_D:
                dD += g * u
            if HAS_Z:
                y = tl.sum(h * Ct[:, None], axis=0) + Dv * u
                dz = gout * y * z_sig * (1.0 + z * (1.0 - z_sig))
                tl.store(dz_row + p * sdz_l, dz.to(dz_ptr.dtype.element_ty), mask=dmask)
            if SOFTPLUS:
                ddl = ddl * tl.sigmoid(raw)
            dbias += tl.where(dmask, ddl, 0.0)
            tl.store(dd_row + p * sdd_l, ddl.to(ddelta_ptr.dtype.element_ty), mask=dmask)
            tl.store(du_row + p * sdu_l, du.to(du_ptr.dtype.element_ty), mask=dmask)
            # masked channels have g = 0, so G = 0 and u = 0: they add nothing to the sums over channels
            tl.atomic_add(dB_ptr + dBC_row + p, tl.sum(G * du_t[None, :], axis=1), mask=nmask)
            tl.atomic_add(dC_ptr + dBC_row + p, tl.sum(h * g[None, :], axis=1), mask=nmask)
            i, j = _advance(i, j, m, -s)
            t -= 1
        tl.debug_barrier()  # before the next chunk overwrites the scratch buffer
        c -= 1
    # per-batch partial sums, (batch * groups * dim_g[, N]); the caller sums over the batch
    tl.store(dA_ptr + row[None, :] * N + n[:, None], dA, mask=tile_mask)
    if HAS_D:
        tl.store(dD_ptr + row, dD, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + row, dbias, mask=dmask)
