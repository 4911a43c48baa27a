"""``python -m mamkpd.cli.gpu_check OUT_DIR [--dry-run] [--seconds S]``: the GPU check's command line, as
``scripts/gpu_check.sh`` runs it; the check itself is :func:`mamkpd.harness.gpu_check.run_check`.
``--budgets [--dry-run]`` prints every step's budget (``step<TAB>seconds<TAB>later floors``), which the
script reads: the budgets live in one place, :func:`mamkpd.harness.gpu_check.check_budgets`.

A module of its own, not a ``mamkpd`` subcommand: ``mamkpd``'s parser imports every command and with them
OpenCV and the other packages a bare CUDA machine lacks, which the check's path must not import.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..harness.gpu_check import CHECK_TOTAL_S, CheckRequest, check_budgets, run_check
from . import _Parser

PROG = "python -m mamkpd.cli.gpu_check"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="The GPU check: scan kernels against their roofline, Table 2's models (eager and "
        "compiled, fp32 and half precision) as ratios to HRNet-W32, one training step, each part in a process "
        "of its own under a time budget.",
        epilog="usually run by scripts/gpu_check.sh [--dry-run] OUT_DIR, after the install and the GPU tests",
    )
    parser.add_argument("out", type=Path, nargs="?", help="folder for results.csv, gpu_check.md and gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--seconds", type=float, default=None, help="the harness's whole budget (default: by mode)")
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="print each step's budget (step, seconds at most, seconds the later steps keep), then the total",
    )
    return parser


def _print_budgets(dry_run: bool) -> None:
    budgets = check_budgets(dry_run)
    names = list(budgets)
    for i, name in enumerate(names):
        later = sum(budgets[n].floor for n in names[i + 1 :])
        print(f"{name}\t{budgets[name].seconds:.0f}\t{later:.0f}")
    print(f"total\t{CHECK_TOTAL_S:.0f}\t0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.budgets:
        _print_budgets(args.dry_run)
        return 0
    if args.out is None:
        parser.error("the following arguments are required: out")
    try:
        outcome = run_check(CheckRequest(out=args.out, dry_run=args.dry_run, seconds=args.seconds))
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(["[gpu-check] goals (reported, not asserted):", *outcome.goals]))
    print(f"[gpu-check] {len(outcome.skipped)} skipped:" if outcome.skipped else "[gpu-check] nothing skipped")
    for step, what, why in outcome.skipped:
        print(f"  - {step}: {what}: {why}")
    print(f"[gpu-check] wrote {outcome.store}, {outcome.summary} ({outcome.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # the parts' children print their progress as it comes
    sys.exit(main())
