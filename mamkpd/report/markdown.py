"""Markdown pieces shared by the report's sections."""

from __future__ import annotations

__all__ = ["md_table"]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; a ``|`` inside a cell is escaped."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)
