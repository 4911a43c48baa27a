"""``mamkpd reproduce``: train (when no checkpoint exists) and evaluate paper rows with their own recipes."""

from __future__ import annotations

import argparse

from .options import add_scan_backend


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train and evaluate rows of Tables 2-5 / Figure 3 with each row's recipe",
        description="For each row: use an existing checkpoint (runs/reproduce/<table>/<row>/best.pth, or "
        "$MAMKPD_CHECKPOINT_DIR/<model>_<dataset>.pth) or train one with the row's recipe "
        "(resumable: rerun the same command to continue), then evaluate it and append every "
        "metric to the results store. Rows whose data set is missing are recorded as not run, "
        "with the reason.",
        epilog="example: mamkpd reproduce --table 3 --row MamKPD-B --data-root /data/mpii --gpus 2",
    )
    p.add_argument("--table", help="paper table: 2, 3, 4, 5 or fig3 (see --list)")
    p.add_argument(
        "--list", action="store_true", help="list the rows of each table (or of --table) with what each one needs"
    )
    p.add_argument("--row", action="append", help="paper row key (repeatable; default: every implemented row)")
    p.add_argument("--data-root", help="data set root (default: the dataset's environment variable)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per training (torchrun when > 1)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size per GPU")
    p.add_argument("--store", help="results store (default: $MAMKPD_RESULTS or results/results.csv)")
    add_scan_backend(p)
    p.set_defaults(func=run)


def print_rows(tables: list[str]) -> None:
    from ..harness.jobs.reproduce import row_requirements
    from ..paper import TABLES

    for table in tables:
        print(TABLES[table].title)
        for row, model, needs in row_requirements(table):
            print(f"  {row:<16} {model:<20} {needs}")


def run(args: argparse.Namespace) -> int:
    from ..harness.jobs.reproduce import accuracy_tables, reproduce_row, reproducible_rows
    from ..harness.store.results import ResultsStore
    from ..paper import TABLES

    table = None
    if args.table:
        table = args.table if args.table.startswith(("table", "fig")) else f"table{args.table}"
    if table is None and not args.list:
        raise ValueError("--table is required (one of 2, 3, 4, 5, fig3; --list shows their rows)")
    if table is not None and table not in accuracy_tables():
        problem = "has no accuracy to reproduce" if table in TABLES else "is not a table of the paper"
        raise ValueError(f"{table} {problem}; choose one of {', '.join(accuracy_tables())}")
    if args.list:
        print_rows([table] if table else accuracy_tables())
        return 0
    if args.gpus < 1 or args.batch_size < 1:
        raise ValueError("--gpus and --batch-size must be at least 1")
    rows = args.row or reproducible_rows(table)
    store = ResultsStore(args.store)
    for row in rows:
        for stored in reproduce_row(
            table,
            row,
            args.data_root,
            store,
            gpus=args.gpus,
            batch_size=args.batch_size,
            echo=lambda line: print(line, flush=True),
            scan_backend=args.scan_backend,
        ):
            if stored["status"] != "not run":
                print(
                    f"  {stored['metric']}: paper {stored['paper_value']}, ours {stored['measured_value']} "
                    f"-> {stored['status']}"
                )
    return 0
