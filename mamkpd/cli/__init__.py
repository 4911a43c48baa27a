"""The ``mamkpd`` command. Each subcommand lives in its own module with ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# module names under mamkpd.cli, in the order `mamkpd --help` lists them
COMMANDS = ("complexity", "train", "evaluate", "eval_results", "fps", "report", "reproduce", "export")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit code 2), as every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mamkpd", description="MamKPD reproducibility suite")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def _show_warnings_as_lines(command: str) -> None:
    """The suite's own warnings (a checkpoint loaded as a trusted full pickle) as one line each."""
    from ..data.threads import ClampedWorkersWarning
    from ..models.checkpoint_file import TrustedCheckpointWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (TrustedCheckpointWarning, ClampedWorkersWarning)):
            print(f"mamkpd {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before any heavy import: a typo is answered at once
    from ..data.threads import set_main_process_threads

    set_main_process_threads()  # OMP_NUM_THREADS if set, else torch's default within this process's CPUs
    _show_warnings_as_lines(args.command)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        # expected user errors (a file not found, a directory where a file belongs, bad values): one line
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mamkpd {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # every write is whole or absent (store rows, REPORT.md, checkpoints): say so, not a traceback
        print(
            f"mamkpd {args.command}: interrupted; every file written so far is whole (a results store keeps "
            "each complete row): run the command again to continue",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
