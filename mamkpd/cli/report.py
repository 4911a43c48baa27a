"""``mamkpd report``: the paper's tables beside the results store, as REPORT.md, CSVs and figures."""

from __future__ import annotations

import argparse
import os
import sys

from .options import add_allocator, add_scan_backend


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write REPORT.md and one CSV per paper table from the results store (into runs/report/)",
        description="Compare every row of the paper's Tables 1-5 and Figure 3 with the results store and write "
        "REPORT.md (tables with paper value, ours, status and protocol; findings; figures), one CSV per table "
        "and two figures into --out. With --run, first measure what this machine can: params/GFLOPs of every "
        "row, CPU speed, a short training and evaluation on the pose samples (the measurements go to the "
        "results store; the progress log to report-run.log beside the report).",
        epilog="examples: mamkpd report --run  |  mamkpd report --store results/results.csv --out /tmp/report  |  "
        "regenerate the committed example: mamkpd report --run --store reports/example-cpu/results.csv "
        "--out reports/example-cpu --force (from an empty store)",
    )
    p.add_argument("--store", default=None, help="results store CSV (default: $MAMKPD_RESULTS or results/results.csv)")
    p.add_argument("--out", default="runs/report", help="output folder (default: runs/report/, not committed)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that holds the committed example report (reports/example-cpu), replacing it",
    )
    p.add_argument("--run", action="store_true", help="measure what this machine can before writing")
    p.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="with --run: seconds for the timing and the training, which stop at a safe point (between two "
        "models, two epochs) rather than overrun; the counts, findings and reasons always run (default 300)",
    )
    p.add_argument("--device", default="cpu", help="with --run: device for the speed and training steps")
    add_scan_backend(p)
    add_allocator(p)
    p.add_argument("--no-readings", action="store_true", help="with --run: skip Table 1's alternative readings")
    p.add_argument(
        "--no-onnx",
        action="store_true",
        help="with --run: skip the ONNX Runtime timings (by default each timed model is also exported and timed "
        "in onnxruntime, last, in what the budget leaves)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..harness.store.results import ResultsStore, default_store_path
    from ..report import check_out_dir, run_log_section, write_report, write_run_log

    store = args.store or str(default_store_path())
    check_out_dir(args.out, args.force)  # before measuring for minutes
    sections, log, left_out = [], [], []
    if args.run:
        from ..harness.jobs.run_plan import RunPlan
        from ..report.onnx_speed import run_measurements_with_onnx

        def echo(line: str) -> None:
            print(line, flush=True)
            log.append(line)

        plan = RunPlan(
            budget_s=args.budget_s,
            device=args.device,
            readings=not args.no_readings,
            scan_backend=args.scan_backend,
            allocator=args.allocator,
            onnx_speed=not args.no_onnx,
        )
        run_log = run_measurements_with_onnx(store, plan, echo=echo)
        sections, left_out = [run_log_section(run_log)], run_log.left_out
    elif not os.path.exists(store):
        raise FileNotFoundError(
            f"results store {store} not found: run `mamkpd report --run`, the pytest reproductions, or pass --store"
        )
    written = write_report(store, args.out, extra_sections=sections, force=args.force, left_out=left_out)
    if log:
        written["log"] = write_run_log(args.out, log)
    print(f"wrote {written['report']} and {len(written) - 1} table CSVs/figures/logs in {written['report'].parent}")
    contents = ResultsStore(store).read()
    for what, lines in (("torn", contents.torn_lines), ("not data", contents.invalid_lines)):
        if lines:
            print(f"warning: {store}: {len(lines)} line(s) skipped as {what} (see REPORT.md)", file=sys.stderr)
    return 0
