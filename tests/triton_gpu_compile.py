"""Compile the scan kernels for GPUs on a machine without one: Triton's whole pipeline (front end, TTGIR,
LLVM, PTX, ptxas) for sm_80 (A100), sm_89 (RTX 4090, the paper's GPU) and sm_90 (H100/H200), nothing
launched. Catches what the interpreter lets through (Python control flow on tensor values, shapes or dtypes
the compiler refuses). Run in its own process without TRITON_INTERPRET (the interpreter replaces the
kernels' compiled form):

    python tests/triton_gpu_compile.py [--targets 80,89,90] [--ptx DIR]

Prints, for every kernel and target, its registers a thread and local (spilled) bytes, read from the cubin
by the ``cuobjdump`` Triton ships, and the SASS instructions of each innermost loop (``nvdisasm``): one
iteration is one time step of a warp's 32 channels, so instructions / 128 is an SM's issue cycles per
(channel, step) at 4 warp instructions a clock, and MUFU / 16 its special-function cycles.
``--ptx DIR`` writes each kernel's PTX and cubin there.
Works with Triton 3.0 (torch 2.4's) to 3.9: ASTSource took ``constants`` keyed by argument index before
it took ``constexprs``.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mamkpd.ops import scan_triton_kernels as kernels

FP32_POINTERS = ("A", "A2", "D", "bias", "states", "hbuf", "dA", "dD", "dbias", "dB", "dC")  # params, sums


def compile_for_gpu(kernel, io_type: str, constexprs: dict, arch: int, num_warps: int):
    """Compile ``kernel`` for sm_``arch`` with pointers to ``io_type`` (fp32 for parameters and sums), every
    integer argument i32 (strides of 1 not specialised: the general case)."""
    names = kernel.arg_names
    types = {}
    for name in names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = "*fp32" if name.removesuffix("_ptr") in FP32_POINTERS else f"*{io_type}"
        else:
            types[name] = "i32"
    if "constexprs" in inspect.signature(ASTSource.__init__).parameters:  # Triton >= 3.3
        source = ASTSource(fn=kernel, signature=types, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    else:  # Triton 3.0-3.2: the signature of the non-constexpr arguments, keyed by index
        signature = {i: t for i, (n, t) in enumerate(types.items()) if t != "constexpr"}
        source = ASTSource(fn=kernel, signature=signature, constants={names.index(k): v for k, v in constexprs.items()})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=num_warps))


# MamKPD-B's stage 1: N = 8, bias and softplus, D; the cross form as SS2D runs it (bf16 under autocast) and
# the per-group form with z in fp32. One channel a thread, 64 channels a program (an autotuner config).
FLAGS = dict(N=8, NP=8, BLOCK_D=64, HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, ACC=tl.float32)
# SS2D's layouts: x, delta (and their gradients, the output rows) with channels innermost, B and C views with
# the states innermost; Triton specialises an integer argument equal to 1 as this constant
UNIT_STRIDES = dict(su_d=1, sd_d=1, sB_n=1, sC_n=1)
# The forward at inference and in training (keeping the chunk-start states), the backward from them and, for
# comparison, the backward that sweeps for them (what a backward called without them runs).
CROSS_FORWARD = dict(FLAGS, HAS_Z=False, CROSS=True, CHUNK=16, so_d=1, **UNIT_STRIDES)
CROSS_BACKWARD = dict(FLAGS, HAS_Z=False, CROSS=True, CHUNK=16, sg_d=1, sdu_d=1, sdd_d=1, **UNIT_STRIDES)
CASES = {
    "forward-cross-bf16": (kernels.scan_fwd_kernel, "bf16", dict(CROSS_FORWARD, KEEP_STATES=False)),
    "forward-cross-bf16-keeping-states": (kernels.scan_fwd_kernel, "bf16", dict(CROSS_FORWARD, KEEP_STATES=True)),
    "backward-cross-bf16": (kernels.scan_bwd_kernel, "bf16", dict(CROSS_BACKWARD, STATES_GIVEN=True)),
    "backward-cross-bf16-sweeping": (kernels.scan_bwd_kernel, "bf16", dict(CROSS_BACKWARD, STATES_GIVEN=False)),
    "forward-group-fp32-z": (
        kernels.scan_fwd_kernel,
        "fp32",
        dict(FLAGS, HAS_Z=True, CROSS=False, CHUNK=16, KEEP_STATES=True),
    ),
    "backward-group-fp32-z": (
        kernels.scan_bwd_kernel,
        "fp32",
        dict(FLAGS, HAS_Z=True, CROSS=False, CHUNK=16, STATES_GIVEN=True),
    ),
}


def _tool(name: str) -> Path | None:
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    return path if path.exists() else None


def resources(cubin: bytes) -> tuple[str, str, dict]:
    """(registers, local bytes, {innermost loop: Counter of SASS opcodes}) of a compiled kernel."""
    dump, disasm = _tool("cuobjdump"), _tool("nvdisasm")
    if dump is None or disasm is None:
        return "?", "?", {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([dump, "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([disasm, "-c", f.name], capture_output=True, text=True).stdout
    regs = re.search(r"REG:(\d+)", usage)
    local = re.search(r"LOCAL:(\d+)", usage)
    return (regs.group(1) if regs else "?"), (local.group(1) if local else "?"), sass_loops(sass)


def sass_loops(sass: str) -> dict:
    """Opcode counts of each innermost loop (a backward branch's target to the branch)."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^(\.L_x_\d+):", line))}
    spans = set()
    for i, line in enumerate(lines):
        m = re.search(r"BRA\s+`?\(?(\.L_x_\d+)", line)
        if m and labels.get(m.group(1), i) < i:
            spans.add((labels[m.group(1)], i))
    loops = {}
    for a, b in sorted(spans):
        if any(o != (a, b) and a <= o[0] and o[1] <= b for o in spans) or b - a < 8:
            continue  # an outer loop, or the end-of-kernel spin
        ops = collections.Counter()
        for line in lines[a : b + 1]:
            m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
            if m and m.group(1) != "NOP":
                ops[m.group(1)] += 1
        loops[(a, b)] = ops
    return loops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="80,89,90", help="compute capabilities, comma-separated")
    parser.add_argument("--ptx", type=Path, default=None, help="write each kernel's PTX and cubin to this directory")
    args = parser.parse_args(argv)
    for arch in (int(a) for a in args.targets.split(",")):
        for label, (kernel, io_type, constexprs) in CASES.items():
            compiled = compile_for_gpu(kernel, io_type, constexprs, arch, num_warps=2)
            regs, local, loops = resources(compiled.asm["cubin"])
            print(f"sm_{arch} {label}: {len(compiled.asm['cubin'])} bytes, {regs} registers, {local} bytes local")
            for ops in loops.values():
                total = sum(ops.values())
                print(f"    loop: {total} SASS instructions ({total / 128:.2f} issue cycles an SM a channel-step), "
                      f"MUFU {ops['MUFU']} ({ops['MUFU'] / 16:.2f}), SHFL {ops['SHFL']}, BAR {ops['BAR']}")  # fmt: skip
            if args.ptx is not None:
                args.ptx.mkdir(parents=True, exist_ok=True)
                (args.ptx / f"sm{arch}-{label}.ptx").write_text(compiled.asm["ptx"])
                (args.ptx / f"sm{arch}-{label}.cubin").write_bytes(compiled.asm["cubin"])
    print(f"triton {triton.__version__}: every kernel compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
