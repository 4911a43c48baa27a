"""Markdown pieces shared by the report's sections."""

from __future__ import annotations

from ..harness.store.results import utf8_text

__all__ = ["md_table", "one_line"]


def one_line(text: object) -> str:
    """``text`` on one line, in UTF-8: a line break from the store, a file name or a checkpoint cannot add a
    report line, nor a file name that is not UTF-8 stop the report being written."""
    return " ".join(utf8_text(str(text)).splitlines())


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table whose cells cannot add structure: each on one line, ``\\`` and ``|`` escaped."""
    esc = lambda s: one_line(s).replace("\\", "\\\\").replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)
