"""The ``mamkpd`` command. Each subcommand lives in its own module with ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# module names under mamkpd.cli, in the order `mamkpd --help` lists them
COMMANDS = ("complexity", "train", "evaluate", "eval_results", "fps", "report", "reproduce", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mamkpd", description="MamKPD reproducibility suite")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..data.threads import set_main_process_threads

    args = build_parser().parse_args(argv)
    set_main_process_threads()  # OMP_NUM_THREADS if set, else torch's default within this process's CPUs
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        # expected user errors: one clear line, no traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mamkpd {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
