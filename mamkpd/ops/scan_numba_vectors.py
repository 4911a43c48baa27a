"""Explicit SIMD vectors for the numba kernels: a numba type lowered to an LLVM vector of ``LANES`` floats, and
the few operations the scan needs. Imported only once numba is known to be installed.

LLVM's loop vectoriser gives up on the scan's loops (numba's arrays carry no aliasing information, and its
signed indices bring wrap-around checks), so the kernels say what they mean: a ``Vec`` is ``LANES``
consecutive channels, loaded from and stored to a contiguous row, and every arithmetic operation acts on all
lanes at once. LLVM then emits one AVX-512 register (or two AVX2 ones, or four SSE ones) per vector on any
x86 machine, whatever the host. Lanes never mix except in :func:`hsum`, whose pairwise tree is fixed, so
results do not depend on how channels are grouped into tasks.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

__all__ = [
    "LANES",
    "fraction",
    "held",
    "hsum",
    "scale2",
    "reduces_exactly",
    "scales_exactly",
    "prefetch",
    "item",
    "prefetch_item",
    "splat",
    "transpose_in",
    "transpose_out",
    "vabs",
    "veq",
    "vfloor",
    "vfma",
    "vge",
    "vgt",
    "vlog",
    "vload",
    "vmax",
    "vmin",
    "vrint",
    "vstore",
    "where",
]

LANES = 16  # channels per vector: one AVX-512 register of float32
_FLOATS = (types.float32, types.float64)
_I32 = ir.IntType(32)


class Vec(types.Type):
    """``LANES`` values of one float dtype."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec[{dtype} x {LANES}]")


class Mask(types.Type):
    """``LANES`` booleans, the result of a comparison of two vectors."""

    def __init__(self):
        super().__init__(name=f"Mask[{LANES}]")


MASK = Mask()


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), LANES))


@register_model(Mask)
class _MaskModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(1), LANES))


def _call_intrinsic(builder, name: str, args):
    """Call the LLVM intrinsic ``name`` overloaded on the vector type of ``args[0]`` (e.g. llvm.fma.v16f32)."""
    vtype = args[0].type
    suffix = f"v{vtype.count}f{32 if isinstance(vtype.element, ir.FloatType) else 64}"
    fnty = ir.FunctionType(vtype, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, f"{name}.{suffix}"), args)


def _element_pointer(context, builder, arrty, arr, index):
    # the caller guarantees a unit stride along the row and index .. index + LANES within it
    return builder.gep(context.make_array(arrty)(context, builder, arr).data, [index])


def _is_row(arr, index) -> bool:
    return isinstance(arr, types.Array) and arr.dtype in _FLOATS and isinstance(index, types.Integer)


@intrinsic
def vload(typingctx, row, index):
    """``row[index:index + LANES]`` of a 1-d array with unit stride."""
    if not _is_row(row, index):
        return None
    vt = Vec(row.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], *args)
        vptr = builder.bitcast(ptr, context.get_value_type(vt).as_pointer())
        return builder.load(vptr, align=row.dtype.bitwidth // 8)

    return vt(row, index), codegen


@intrinsic
def vstore(typingctx, row, index, v):
    """``row[index:index + LANES] = v``."""
    if not (_is_row(row, index) and isinstance(v, Vec) and v.dtype == row.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, args[2].type.as_pointer()), align=row.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(row, index, v), codegen


def _prefetch(builder, ptr) -> None:
    ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    fnty = ir.FunctionType(ir.VoidType(), [ptr.type, _I32, _I32, _I32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
    builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])  # read, keep, data


@intrinsic
def prefetch(typingctx, row, index):
    """Ask for the cache line of ``row[index]`` ahead of its use (rows the scan visits in a strided order)."""
    if not _is_row(row, index):
        return None

    def codegen(context, builder, sig, args):
        _prefetch(builder, _element_pointer(context, builder, sig.args[0], *args))
        return context.get_dummy_value()

    return types.none(row, index), codegen


@intrinsic
def prefetch_item(typingctx, arr, i, j):
    """Ask for the cache line of ``arr[i, j]``, a 2-d array of any strides (never faults: a prefetch only asks)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(i, types.Integer)
            and isinstance(j, types.Integer)):  # fmt: skip
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        index = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:], strict=True)]
        _prefetch(builder, cgutils.get_item_pointer(context, builder, sig.args[0], ary, index, wraparound=False))
        return context.get_dummy_value()

    return types.none(arr, i, j), codegen


@intrinsic
def splat(typingctx, x):
    """A vector with ``x`` in every lane."""
    if x not in _FLOATS:
        return None
    vt = Vec(x)

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(vt)
        one = builder.insert_element(ir.Constant(lt, ir.Undefined), args[0], ir.Constant(_I32, 0))
        lanes = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(lt, ir.Undefined), lanes)

    return vt(x), codegen


@intrinsic
def held(typingctx, v):
    """``v`` through an empty inline-asm barrier: a value the optimiser cannot see into, so a constant made
    once outside a loop stays in a register there (LLVM would otherwise reload it from the constant pool at
    every use, through 64-bit addresses it shuffles between general registers each iteration). The barrier
    takes one vector register at a time, so a wider vector passes in register-sized pieces."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, sig, args):
        vector = args[0]
        lanes = min(LANES, _register_bits() // v.dtype.bitwidth)
        return _concatenated(builder, [_barrier(builder, piece) for piece in _pieces(builder, vector, lanes)])

    return v(v), codegen


def _target_features() -> dict:
    """The features of the CPU numba compiles for: the host's, or none where NUMBA_CPU_NAME names another target
    (then only SSE2 is assumed: any x86-64)."""
    import llvmlite.binding as llvm
    from numba.core import config

    if config.CPU_NAME not in (None, "host"):
        return {}
    return dict(llvm.get_host_cpu_features())


def _register_bits() -> int:
    """The width (bits) of the widest vector register of the CPU numba compiles for: 512 with AVX-512, 256 with
    AVX, else 128."""
    features = _target_features()
    return 512 if features.get("avx512f") else 256 if features.get("avx") else 128


def _pieces(builder, vector, lanes):
    count = vector.type.count
    if lanes >= count:
        return [vector]
    return [
        builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(_I32, lanes), list(range(at, at + lanes))))
        for at in range(0, count, lanes)
    ]


def _barrier(builder, vector):
    asm = ir.InlineAsm(ir.FunctionType(vector.type, [vector.type]), "", "=v,0", side_effect=False)
    return builder.call(asm, [vector])


def _concatenated(builder, pieces):
    while len(pieces) > 1:
        width = pieces[0].type.count
        order = ir.Constant(ir.VectorType(_I32, 2 * width), list(range(2 * width)))
        pieces = [builder.shuffle_vector(a, b, order) for a, b in zip(pieces[::2], pieces[1::2], strict=True)]
    return pieces[0]


def _binary(instruction: str):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(*args)

        return a(a, b), codegen

    return op


_vadd, _vsub, _vmul, _vdiv = (_binary(i) for i in ("fadd", "fsub", "fmul", "fdiv"))


def _overload_operator(python_op, vector_op):
    @overload(python_op)
    def _(a, b):
        if isinstance(a, Vec) and a == b:
            return lambda a, b: vector_op(a, b)
        return None


for _python_op, _vector_op in (
    (operator.add, _vadd),
    (operator.sub, _vsub),
    (operator.mul, _vmul),
    (operator.truediv, _vdiv),
):
    _overload_operator(_python_op, _vector_op)


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c rounded once, in every lane."""
    if not (isinstance(a, Vec) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return _call_intrinsic(builder, "llvm.fma", args)

    return a(a, b, c), codegen


def _unary(name: str):
    @intrinsic
    def op(typingctx, a):
        if not isinstance(a, Vec):
            return None

        def codegen(context, builder, sig, args):
            return _call_intrinsic(builder, name, args)

        return a(a), codegen

    return op


vrint = _unary("llvm.rint")  # to the nearest integer, ties to even (as np.rint)
vfloor = _unary("llvm.floor")
vabs = _unary("llvm.fabs")
vlog = _unary("llvm.log")  # libm's log lane by lane: only the float64 path uses it


def _compare(predicate: str):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return builder.fcmp_ordered(predicate, *args)

        return MASK(a, b), codegen

    return op


vgt, vge, veq, _vlt = (_compare(p) for p in (">", ">=", "==", "<"))


@intrinsic
def where(typingctx, mask, a, b):
    """a where mask, else b, lane by lane."""
    if not (mask == MASK and isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(*args)

    return a(mask, a, b), codegen


@njit(inline="always")
def vmin(a, b):
    return where(_vlt(a, b), a, b)


@njit(inline="always")
def vmax(a, b):
    return where(vgt(a, b), a, b)


def _pow2i(builder, k, dtype):
    """2**k for integral k (a vector) in the normal exponent range, built from its bits."""
    single = dtype == types.float32
    itype = ir.VectorType(ir.IntType(32 if single else 64), LANES)
    bias, shift = (127, 23) if single else (1023, 52)
    exponent = builder.add(builder.fptosi(k, itype), ir.Constant(itype, [bias] * LANES))
    return builder.bitcast(builder.shl(exponent, ir.Constant(itype, [shift] * LANES)), k.type)


def scales_exactly(dtype) -> bool:
    """Whether :func:`scale2` runs on vscalefps for ``dtype``: then p * 2**k is exact for any k, overflow giving
    inf and underflow subnormals or 0, as the product rounded once."""
    return dtype == types.float32 and LANES == 16 and _register_bits() == 512


def reduces_exactly(dtype) -> bool:
    """Whether :func:`fraction` runs for ``dtype``: where :func:`scales_exactly` and the host has AVX-512DQ's
    vreduceps (every AVX-512 server CPU has; the first Xeon Phi had AVX-512F alone)."""
    return scales_exactly(dtype) and bool(_target_features().get("avx512dq"))


@intrinsic
def scale2(typingctx, p, k):
    """p * 2**k for integral k in the normal exponent range: AVX-512's vscalefps (float32) in one instruction
    where the host has it, else p times 2**k built from its exponent bits, in four. Both round the exact product
    once, so they give the same bits (a subnormal result included). vscalefps takes 2**floor(k) of any k."""
    if not (isinstance(p, Vec) and p == k):
        return None

    def codegen(context, builder, sig, args):
        if scales_exactly(p.dtype):
            vtype = args[0].type
            fnty = ir.FunctionType(vtype, [vtype, vtype, vtype, ir.IntType(16), _I32])
            scalef = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.mask.scalef.ps.512")
            # all lanes (mask -1), the current rounding mode (4: _MM_FROUND_CUR_DIRECTION)
            return builder.call(
                scalef, [args[0], args[1], args[0], ir.Constant(ir.IntType(16), -1), ir.Constant(_I32, 4)]
            )
        return builder.fmul(args[0], _pow2i(builder, args[1], p.dtype))

    return p(p, k), codegen


@intrinsic
def fraction(typingctx, x):
    """x - floor(x), in [0, 1) (rounded where x is negative and small): AVX-512DQ's vreduceps in one
    instruction. Only where :func:`reduces_exactly` (then :func:`scale2` of x itself scales by 2**floor(x))."""
    if not (isinstance(x, Vec) and reduces_exactly(x.dtype)):
        return None

    def codegen(context, builder, sig, args):
        vtype = args[0].type
        fnty = ir.FunctionType(vtype, [vtype, _I32, vtype, ir.IntType(16), _I32])
        reduce = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.mask.reduce.ps.512")
        # imm 9: no fraction bits kept (M = 0), rounded down (1), precision exception suppressed (8); all lanes
        return builder.call(
            reduce, [args[0], ir.Constant(_I32, 9), args[0], ir.Constant(ir.IntType(16), -1), ir.Constant(_I32, 4)]
        )

    return x(x), codegen


@intrinsic
def hsum(typingctx, v):
    """The sum of the lanes, by a fixed pairwise tree (halves added until one lane is left)."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, sig, args):
        x, width = args[0], LANES
        while width > 1:
            half = width // 2
            low = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, half), list(range(half))))
            high = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, half), list(range(half, width))))
            x, width = builder.fadd(low, high), half
        return builder.extract_element(x, ir.Constant(_I32, 0))

    return v.dtype(v), codegen


def _transposed(builder, vectors):
    """The LANES x LANES transpose of ``vectors`` (row r = vector r): log2(LANES) stages, each swapping the
    off-diagonal h x h blocks of every 2h x 2h block with one shuffle per vector."""
    n = len(vectors)
    mask = lambda f: ir.Constant(ir.VectorType(_I32, n), [f(c) for c in range(n)])  # noqa: E731
    h = n // 2
    while h >= 1:
        first = mask(lambda c, h=h: c if c & h == 0 else n + c - h)
        second = mask(lambda c, h=h: c + h if c & h == 0 else n + c)
        for r in range(n):
            if r & h == 0:
                a, b = vectors[r], vectors[r + h]
                vectors[r], vectors[r + h] = builder.shuffle_vector(a, b, first), builder.shuffle_vector(a, b, second)
        h //= 2
    return vectors


def _is_grid(arr) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 2 and arr.dtype in _FLOATS


def _item_pointers(context, builder, arrty, arr, i, j, sig_i, sig_j):
    """Pointers to arr[i, j + r] for r < LANES (any strides)."""
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, i, sig_i, types.intp)
    j = context.cast(builder, j, sig_j, types.intp)
    step = ir.Constant(j.type, 1)
    pointers = []
    for _ in range(LANES):
        pointers.append(cgutils.get_item_pointer(context, builder, arrty, ary, [i, j], wraparound=False))
        j = builder.add(j, step)
    return pointers


@intrinsic
def transpose_in(typingctx, rows, t, c, tile, j, pitch):
    """tile[j + i * pitch + r] = rows[t + i, c + r] for i, r < LANES: a LANES x LANES block of a time-contiguous
    array (rows[:, c] has unit stride: the caller checks) into a tile of channels innermost, by vector loads
    along time and a transpose in registers."""
    if not (_is_grid(rows) and _is_row(tile, j) and tile.dtype == rows.dtype):
        return None

    def codegen(context, builder, sig, args):
        vt = context.get_value_type(Vec(sig.args[0].dtype))
        sources = _item_pointers(context, builder, sig.args[0], args[0], args[1], args[2], sig.args[1], sig.args[2])
        align = sig.args[0].dtype.bitwidth // 8
        loaded = [builder.load(builder.bitcast(p, vt.as_pointer()), align=align) for p in sources]
        vectors = _transposed(builder, loaded)
        at = context.cast(builder, args[4], sig.args[4], types.intp)
        pitch = context.cast(builder, args[5], sig.args[5], types.intp)
        data = context.make_array(sig.args[3])(context, builder, args[3]).data
        for v in vectors:
            builder.store(v, builder.bitcast(builder.gep(data, [at]), vt.as_pointer()), align=align)
            at = builder.add(at, pitch)
        return context.get_dummy_value()

    return types.none(rows, t, c, tile, j, pitch), codegen


@intrinsic
def transpose_out(typingctx, tile, j, pitch, rows, t, c):
    """rows[t + i, c + r] = tile[j + i * pitch + r] for i, r < LANES: the inverse of :func:`transpose_in`."""
    if not (_is_grid(rows) and _is_row(tile, j) and tile.dtype == rows.dtype):
        return None

    def codegen(context, builder, sig, args):
        vt = context.get_value_type(Vec(sig.args[3].dtype))
        align = sig.args[3].dtype.bitwidth // 8
        at = context.cast(builder, args[1], sig.args[1], types.intp)
        pitch = context.cast(builder, args[2], sig.args[2], types.intp)
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        vectors = []
        for _ in range(LANES):
            vectors.append(builder.load(builder.bitcast(builder.gep(data, [at]), vt.as_pointer()), align=align))
            at = builder.add(at, pitch)
        targets = _item_pointers(context, builder, sig.args[3], args[3], args[4], args[5], sig.args[4], sig.args[5])
        for v, p in zip(_transposed(builder, vectors), targets, strict=True):
            builder.store(v, builder.bitcast(p, vt.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.none(tile, j, pitch, rows, t, c), codegen


@intrinsic
def item(typingctx, arr, i, j):
    """arr[i, j] of a 2-d array of any strides, the indices known to be in range (no wrap-around of negative
    indices: fewer instructions where it is read in a loop)."""
    if not (_is_grid(arr) and isinstance(i, types.Integer) and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        index = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:], strict=True)]
        return builder.load(cgutils.get_item_pointer(context, builder, sig.args[0], ary, index, wraparound=False))

    return arr.dtype(arr, i, j), codegen
