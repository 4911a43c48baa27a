"""``mamkpd report``: the paper's tables beside the results store, as REPORT.md, CSVs and figures."""

from __future__ import annotations

import argparse
import os

from ..harness.results import default_store_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write reports/REPORT.md and one CSV per paper table from the results store",
        description="Compare every row of the paper's Tables 1-5 and Figure 3 with the results store and write "
        "REPORT.md (tables with paper value, ours, status and protocol; findings; figures) and one "
        "CSV per table. With --run, first measure what this machine can: params/GFLOPs of every "
        "row, CPU speed, a short training and evaluation on the pose samples.",
        epilog="example: mamkpd report --run --out reports/",
    )
    p.add_argument("--store", default=None, help="results store CSV (default: $MAMKPD_RESULTS or results/results.csv)")
    p.add_argument("--out", default="reports", help="output folder (default: reports/)")
    p.add_argument("--run", action="store_true", help="measure what this machine can before writing")
    p.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="with --run: steps that would start after this many seconds are skipped (default 300)",
    )
    p.add_argument("--device", default="cpu", help="with --run: device for the speed and training steps")
    p.add_argument("--no-readings", action="store_true", help="with --run: skip Table 1's alternative readings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import run_log_section, write_report

    store = args.store or str(default_store_path())
    sections = []
    if args.run:
        from ..harness.run_plan import RunPlan, run_measurements

        plan = RunPlan(budget_s=args.budget_s, device=args.device, readings=not args.no_readings)
        sections = [run_log_section(run_measurements(store, plan, echo=lambda line: print(line, flush=True)))]
    elif not os.path.exists(store):
        raise FileNotFoundError(
            f"results store {store} not found: run `mamkpd report --run`, the pytest reproductions, or pass --store"
        )
    written = write_report(store, args.out, extra_sections=sections)
    print(f"wrote {written['report']} and {len(written) - 1} table CSVs/figures in {written['report'].parent}")
    return 0
