"""Compile the scan kernels for a GPU on a machine without one: Triton's whole pipeline (front end, TTGIR,
LLVM, PTX, ptxas) for an sm_90 target, nothing launched. Catches what the interpreter lets through (Python
control flow on tensor values, shapes or dtypes the compiler refuses). Run in its own process without
TRITON_INTERPRET (the interpreter replaces the kernels' compiled form):

    python tests/triton_gpu_compile.py
"""

from __future__ import annotations

import sys

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mamkpd.ops import scan_triton_kernels as kernels

TARGET = GPUTarget("cuda", 90, 32)  # H100 / H200
FORWARD_POINTERS = ("u", "delta", "A", "B", "C", "D", "z", "bias", "out", "states")
BACKWARD_POINTERS = (*FORWARD_POINTERS[:8], "gout", "states", "du", "ddelta", "dz", "dA", "dD", "dbias", "dB", "dC")
FP32_POINTERS = ("A", "D", "bias", "states", "dA", "dD", "dbias", "dB", "dC")  # parameters and accumulators


def compile_for_gpu(kernel, pointers, io_type, constexprs, num_warps=4):
    """Compile ``kernel`` for TARGET with pointers to ``io_type`` (fp32 for parameters and accumulators)."""
    fp32 = FP32_POINTERS + (("out", "du") if constexprs["CROSS"] else ())  # the cross form's atomic sums
    names = kernel.arg_names
    signature = {}
    for name in names:
        base = name.removesuffix("_ptr")
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr") and base in pointers:
            signature[name] = "*fp32" if base in fp32 else f"*{io_type}"
        else:
            signature[name] = "i32"
    source = ASTSource(fn=kernel, signature=signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    return triton.compile(source, target=TARGET, options=dict(num_warps=num_warps))


def main() -> int:
    tiles = dict(N=8, NP=8, BLOCK_D=2, BLOCK_T=128, HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, ACC=tl.float32)
    cases = [
        ("backward, per group, fp32 with z", kernels.scan_bwd_kernel, BACKWARD_POINTERS, "fp32",
         dict(tiles, HAS_Z=True, CROSS=False)),
        ("forward, cross, bf16", kernels.scan_fwd_kernel, FORWARD_POINTERS, "bf16",
         dict(tiles, HAS_Z=False, CROSS=True, WRITE_OUT=True, STORE_STATES=False)),
    ]  # fmt: skip
    for label, kernel, pointers, io_type, constexprs in cases:
        compiled = compile_for_gpu(kernel, pointers, io_type, constexprs)
        print(f"{label}: {len(compiled.asm['cubin'])} bytes of sm_90 code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
