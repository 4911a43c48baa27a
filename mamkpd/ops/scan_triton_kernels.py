"""Triton kernels of the selective scan (forward, backward) and of its four-direction cross form.

Imported only by :mod:`.scan_triton`, lazily: ``triton.jit`` decides at definition time whether the kernels
are compiled for a GPU or run by Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors).

One program owns ``BLOCK_D`` channels of one (batch, group) pair and walks the whole sequence in chunks of
``BLOCK_T`` steps, keeping the (BLOCK_D, N) state in registers between chunks. Inside a chunk each state
index n is a (BLOCK_D, BLOCK_T) tile scanned along time with ``tl.associative_scan`` on the composition of
affine maps h -> a h + b; the chunk's start state is folded into its first step. Tiles stay 2-d with time
innermost (the layout Triton's scan lowering is tested on); the N states are a loop, not unrolled (unrolled,
the compiler hoists every state's loads and the backward kernel spills registers).

Indexing is over (batch, k, channel, step): k is the B/C group, and every channel c = k * dim_g + d. In
the cross form (``CROSS``) k is the scan direction of VMamba's cross scan: the shared input x, the output
and their gradients are (batch, dim, H*W) tensors read and written at each direction's spatial positions
(outputs of the four directions summed with atomics), while delta, B and C come per direction.

The loops over chunks are ``while`` loops on a counter, not ``range(n_chunks)``: Triton 3.6's interpreter
(not 3.9's) makes a scalar argument a Python int by ``int()`` of a one-element array, which numpy 2 refuses
("only 0-dimensional arrays can be converted to Python scalars"), while a comparison's truth value passes.
Compiled, both are one loop; a constexpr count would compile once per sequence length.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _compose(a_first, b_first, a_then, b_then):
    # h -> a_first h + b_first, then h -> a_then h + b_then
    return a_first * a_then, b_first * a_then + b_then


@triton.jit
def _positions(t, k, length, height, width, CROSS: tl.constexpr):
    """Where step t of group/direction k sits along the stored sequence."""
    p = t
    if CROSS:
        t = tl.minimum(t, length - 1)  # masked steps past the end still get an address inside the tensor
        t = tl.where(k >= 2, length - 1 - t, t)  # directions 2 and 3 run backwards
        # directions 1 and 3 walk the columns: step t = w * H + h is the row-major position h * W + w
        p = tl.where(k % 2 == 1, (t % height) * width + t // height, t)
    return p


@triton.jit
def _softplus(x):
    # log1p(exp(x)) with PyTorch's threshold of 20; far below zero log(1 + e^x) would round to 0, use e^x
    return tl.where(x > 20.0, x, tl.where(x < -15.0, tl.exp(x), tl.log(1.0 + tl.exp(x))))


@triton.jit
def _load_delta(delta_ptr, rows, pos, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ACC: tl.constexpr):
    """(raw delta + bias, effective delta); the effective delta is 0 on masked steps (decay 1, input 0)."""
    raw = tl.load(delta_ptr + rows[:, None] + pos[None, :], mask=mask, other=0.0).to(ACC)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dl = raw
    if SOFTPLUS:
        dl = _softplus(raw)
    return raw, tl.where(mask, dl, 0.0)


@triton.jit
def _program(dim_g, BLOCK_D: tl.constexpr, CROSS: tl.constexpr):
    """This program's batch b, group k and channels d (mask dmask); ch = k * dim_g + d indexes A, D and
    delta_bias; ``row`` the channels' rows in per-group (batch, groups * dim_g, L) tensors and ``shared``
    in the cross form's shared (batch, dim_g, L) ones (x, the output and their gradients)."""
    k = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    row = (b * tl.num_programs(1) + k) * dim_g + d
    shared = row
    if CROSS:
        shared = b * dim_g + d
    return k, b, d < dim_g, k * dim_g + d, row, shared


@triton.jit
def _chunk(u_ptr, delta_ptr, c, k, dmask, rows, shared_rows, bias, length, height, width,
           BLOCK_T: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CROSS: tl.constexpr,
           ACC: tl.constexpr):  # fmt: skip
    """Chunk c's steps t, their positions, masks, u, raw and effective delta."""
    t = c * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = t < length
    pos = _positions(t, k, length, height, width, CROSS)
    mask = dmask[:, None] & tmask[None, :]
    u = tl.load(u_ptr + shared_rows[:, None] + pos[None, :], mask=mask, other=0.0).to(ACC)
    raw, dl = _load_delta(delta_ptr, rows, pos, mask, bias, HAS_BIAS, SOFTPLUS, ACC)
    return t, tmask, pos, mask, u, raw, dl


@triton.jit
def scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    states_ptr,
    sB_b,
    sB_k,
    sB_n,
    sB_l,
    sC_b,
    sC_k,
    sC_n,
    sC_l,
    sA_d,
    sA_n,
    dim_g,
    length,
    height,
    width,
    n_chunks,
    N: tl.constexpr,
    NP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    CROSS: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    STORE_STATES: tl.constexpr,
    ACC: tl.constexpr,
):
    """out = scan (plus D u, times silu(z)); with STORE_STATES the state at the start of every chunk is
    written to ``states`` (batch, groups * dim_g, n_chunks, N) for the backward pass."""
    k, b, dmask, ch, row, shared = _program(dim_g, BLOCK_D, CROSS)
    rows, shared_rows = row * length, shared * length
    cols = tl.arange(0, NP)
    ts = tl.arange(0, BLOCK_T)
    state_mask = dmask[:, None] & (cols[None, :] < N)
    bias = tl.zeros([BLOCK_D], dtype=ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=dmask, other=0.0).to(ACC)
    B_row = B_ptr + b * sB_b + k * sB_k
    C_row = C_ptr + b * sC_b + k * sC_k
    h = tl.zeros([BLOCK_D, NP], dtype=ACC)
    c = tl.full([], 0, tl.int32)
    while c < n_chunks:  # not range(n_chunks): see the module's docstring
        t, tmask, pos, mask, u, _, dl = _chunk(u_ptr, delta_ptr, c, k, dmask, rows, shared_rows, bias, length,
                                               height, width, BLOCK_T, HAS_BIAS, SOFTPLUS, CROSS, ACC)  # fmt: skip
        du = dl * u
        if STORE_STATES:
            tl.store(states_ptr + row[:, None] * (n_chunks * N) + c * N + cols[None, :], h, mask=state_mask)
        y = tl.zeros([BLOCK_D, BLOCK_T], dtype=ACC)
        if WRITE_OUT and HAS_D:
            y += tl.load(D_ptr + ch, mask=dmask, other=0.0).to(ACC)[:, None] * u  # now: u is dead in the loop
        for n in range(N):
            # (columns of register tiles are taken by masked sums: registers cannot be indexed)
            a_n = tl.load(A_ptr + ch * sA_d + n * sA_n, mask=dmask, other=0.0).to(ACC)
            h_n = tl.sum(tl.where(cols[None, :] == n, h, 0.0), axis=1)
            B_n = tl.load(B_row + n * sB_n + pos * sB_l, mask=tmask, other=0.0).to(ACC)
            decay = tl.exp(dl * a_n[:, None])
            inp = du * B_n[None, :]
            inp = tl.where(ts[None, :] == 0, inp + decay * h_n[:, None], inp)
            _, hs = tl.associative_scan((decay, inp), axis=1, combine_fn=_compose)
            if WRITE_OUT:
                C_n = tl.load(C_row + n * sC_n + pos * sC_l, mask=tmask, other=0.0).to(ACC)
                y += hs * C_n[None, :]
            # masked steps have decay 1 and input 0, so the last column is the state after the last real step
            h_end = tl.sum(tl.where(ts[None, :] == BLOCK_T - 1, hs, 0.0), axis=1)
            h = tl.where(cols[None, :] == n, h_end[:, None], h)
        if WRITE_OUT:
            if HAS_Z:
                z = tl.load(z_ptr + rows[:, None] + pos[None, :], mask=mask, other=0.0).to(ACC)
                y = y * z * tl.sigmoid(z)
            if CROSS:
                tl.atomic_add(out_ptr + shared_rows[:, None] + pos[None, :], y, mask=mask)
            else:
                tl.store(out_ptr + rows[:, None] + pos[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
        c += 1


@triton.jit
def scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    gout_ptr,
    states_ptr,
    du_ptr,
    ddelta_ptr,
    dz_ptr,
    dA_ptr,
    dD_ptr,
    dbias_ptr,
    dB_ptr,
    dC_ptr,
    sB_b,
    sB_k,
    sB_n,
    sB_l,
    sC_b,
    sC_k,
    sC_n,
    sC_l,
    sA_d,
    sA_n,
    dim_g,
    length,
    height,
    width,
    n_chunks,
    N: tl.constexpr,
    NP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    CROSS: tl.constexpr,
    ACC: tl.constexpr,
):
    """Gradients, chunk by chunk from the end, recomputing each chunk's states from its stored start state.

    With a_t = exp(delta_t A), b_t = delta_t u_t B_t, h_t = a_t h_{t-1} + b_t, y_t = <C_t, h_t> and g_t the
    gradient of y_t (after the z gate), G_t = dL/dh_t = C_t g_t + a_{t+1} G_{t+1} (a reverse scan), and
    dL/dC_t = g_t h_t, dL/db_t = G_t, dL/d(delta_t A) = G_t a_t h_{t-1} = G_t (h_t - b_t).
    dB and dC are summed over the channels of a group with atomics (fp32 buffers); dA, dD and d(delta_bias)
    are summed over time here and over the batch by the caller.
    """
    k, b, dmask, ch, row, shared = _program(dim_g, BLOCK_D, CROSS)
    rows, shared_rows = row * length, shared * length
    cols = tl.arange(0, NP)
    ts = tl.arange(0, BLOCK_T)
    state_mask = dmask[:, None] & (cols[None, :] < N)
    bias = tl.zeros([BLOCK_D], dtype=ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=dmask, other=0.0).to(ACC)
    Dv = tl.zeros([BLOCK_D], dtype=ACC)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=dmask, other=0.0).to(ACC)
    state_rows = row * (n_chunks * N)
    B_row = B_ptr + b * sB_b + k * sB_k
    C_row = C_ptr + b * sC_b + k * sC_k
    dBC_row = (b * tl.num_programs(1) + k) * N * length  # dB, dC: contiguous (batch, groups, N, L)
    G_next = tl.zeros([BLOCK_D, NP], dtype=ACC)  # G at the first step of the chunk after this one
    dA = tl.zeros([BLOCK_D, NP], dtype=ACC)
    dD = tl.zeros([BLOCK_D], dtype=ACC)
    dbias = tl.zeros([BLOCK_D], dtype=ACC)
    c = n_chunks - 1 + tl.full([], 0, tl.int32)
    while c >= 0:  # not range(n_chunks): see the module's docstring
        t, tmask, pos, mask, u, raw, dl = _chunk(u_ptr, delta_ptr, c, k, dmask, rows, shared_rows, bias, length,
                                                 height, width, BLOCK_T, HAS_BIAS, SOFTPLUS, CROSS, ACC)  # fmt: skip
        # the decay of the next step, a_{t+1}, multiplies G_{t+1} in G_t
        next_mask = dmask[:, None] & ((t + 1) < length)[None, :]
        pos_next = _positions(t + 1, k, length, height, width, CROSS)
        _, dl_next = _load_delta(delta_ptr, rows, pos_next, next_mask, bias, HAS_BIAS, SOFTPLUS, ACC)
        gout = tl.load(gout_ptr + shared_rows[:, None] + pos[None, :], mask=mask, other=0.0).to(ACC)
        g = gout
        if HAS_Z:
            z = tl.load(z_ptr + rows[:, None] + pos[None, :], mask=mask, other=0.0).to(ACC)
            z_sig = tl.sigmoid(z)
            g = gout * z * z_sig
        du = dl * u
        y = tl.zeros([BLOCK_D, BLOCK_T], dtype=ACC)  # the scan's output, for the z gate's gradient
        sum_GB = tl.zeros([BLOCK_D, BLOCK_T], dtype=ACC)  # sum_n G B: gives du and part of ddelta
        ddl = tl.zeros([BLOCK_D, BLOCK_T], dtype=ACC)
        for n in range(N):
            a_n = tl.load(A_ptr + ch * sA_d + n * sA_n, mask=dmask, other=0.0).to(ACC)
            h_start = tl.load(states_ptr + state_rows + c * N + n, mask=dmask, other=0.0)
            B_n = tl.load(B_row + n * sB_n + pos * sB_l, mask=tmask, other=0.0).to(ACC)
            C_n = tl.load(C_row + n * sC_n + pos * sC_l, mask=tmask, other=0.0).to(ACC)
            decay = tl.exp(dl * a_n[:, None])
            inp = du * B_n[None, :]
            first = tl.where(ts[None, :] == 0, decay * h_start[:, None], 0.0)
            _, hs = tl.associative_scan((decay, inp + first), axis=1, combine_fn=_compose)
            if HAS_Z:
                y += hs * C_n[None, :]
            decay_next = tl.exp(dl_next * a_n[:, None])
            grad_in = g * C_n[None, :]
            G_next_n = tl.sum(tl.where(cols[None, :] == n, G_next, 0.0), axis=1)
            last = tl.where(ts[None, :] == BLOCK_T - 1, decay_next * G_next_n[:, None], 0.0)
            _, G = tl.associative_scan((decay_next, grad_in + last), axis=1, combine_fn=_compose, reverse=True)
            tl.atomic_add(dC_ptr + dBC_row + n * length + pos, tl.sum(g * hs, axis=0), mask=tmask)
            tl.atomic_add(dB_ptr + dBC_row + n * length + pos, tl.sum(G * du, axis=0), mask=tmask)
            sum_GB += G * B_n[None, :]
            G_decay = G * (hs - inp)  # G_t a_t h_{t-1}
            ddl += G_decay * a_n[:, None]
            dA = tl.where(cols[None, :] == n, dA + tl.sum(G_decay * dl, axis=1)[:, None], dA)
            G_first = tl.sum(tl.where(ts[None, :] == 0, G, 0.0), axis=1)
            G_next = tl.where(cols[None, :] == n, G_first[:, None], G_next)
        du_out = dl * sum_GB
        ddl += u * sum_GB
        if HAS_D:
            du_out += Dv[:, None] * g
            dD += tl.sum(g * u, axis=1)
            y += Dv[:, None] * u
        if HAS_Z:
            dz = gout * y * z_sig * (1.0 + z * (1.0 - z_sig))
            tl.store(dz_ptr + rows[:, None] + pos[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
        if SOFTPLUS:
            ddl = ddl * tl.sigmoid(raw)
        ddl = tl.where(mask, ddl, 0.0)
        dbias += tl.sum(ddl, axis=1)
        tl.store(ddelta_ptr + rows[:, None] + pos[None, :], ddl.to(ddelta_ptr.dtype.element_ty), mask=mask)
        if CROSS:
            tl.atomic_add(du_ptr + shared_rows[:, None] + pos[None, :], du_out, mask=mask)
        else:
            tl.store(du_ptr + rows[:, None] + pos[None, :], du_out.to(du_ptr.dtype.element_ty), mask=mask)
        c -= 1
    # per-batch partial sums, (batch, groups * dim_g[, N]); the caller sums over the batch
    tl.store(dA_ptr + row[:, None] * N + cols[None, :], dA, mask=state_mask)
    if HAS_D:
        tl.store(dD_ptr + row, dD, mask=dmask)
    if HAS_BIAS:
        tl.store(dbias_ptr + row, dbias, mask=dmask)
