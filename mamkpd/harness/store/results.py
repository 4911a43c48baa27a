"""The results store: an append-only CSV with one row per measurement and the protocol it ran under.

Rows that reproduce a paper figure use the paper table's name (``table1`` … ``table5``, ``fig3``),
its ``row`` key and the paper CSV's column name as ``metric`` (``params_m``, ``gflops``, ``fps``,
``AP``, ``mean``, ``wrist``, …; see :mod:`mamkpd.paper`), so the report can put them beside the paper.

Safe for several processes at once (pytest-xdist workers, ``mamkpd reproduce`` jobs): every append
takes a file lock and writes one complete line in a single ``os.write`` followed by ``fsync``, so a
killed writer leaves either its whole row or none of it. A reader still tolerates a torn line (a
disk-full write, a copy cut short) and reports it instead of failing; so it does a line a hand edit
broke (a number column that holds no number, a status that is none of :data:`STATUSES`): such rows
are skipped and listed, never shown as data.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..measure.machine import environment_info, machine_info

__all__ = [
    "COLUMNS",
    "NUMERIC_COLUMNS",
    "FINDING_METRIC",
    "STATUSES",
    "STATUS_REPRODUCED",
    "STATUS_DIFFERS",
    "STATUS_MEASURED",
    "STATUS_NOT_RUN",
    "StoreContents",
    "ResultsStore",
    "default_store_path",
    "finding_notes",
    "judge",
    "split_finding",
    "utf8_text",
    "machine_info",
    "environment_info",
    "file_lock",
]

COLUMNS: tuple[str, ...] = (
    # what was compared; reading names a non-default architecture reading ("" = the suite's default)
    "table",
    "row",
    "model",
    "reading",
    "metric",
    "paper_value",
    "measured_value",
    "delta",
    "tolerance",
    "tolerance_kind",
    "status",
    "status_reason",
    # evaluation protocol
    "dataset",
    "split",
    "input_size",
    "box_source",
    "flip_test",
    # execution protocol
    "device",
    "runtime",
    "provider",
    "batch_size",
    "precision",
    "channels_last",
    "compile_mode",
    "cudnn_benchmark",
    "tf32",
    "scan_backend",
    "allocator",
    "flops_convention",
    # timing protocol
    "warmup_iterations",
    "timed_iterations",
    "timed_rounds",
    "median",
    "iqr",
    "unit",
    "sample",
    "throttled",
    "gpu_clocks_before",
    "gpu_clocks_after",
    # machine
    "gpu_name",
    "gpu_driver",
    "cuda_version",
    "cpu_model",
    "cpu_count",
    "os",
    # software and provenance
    "python_version",
    "torch_version",
    "mamba_ssm_version",
    "fvcore_version",
    "onnxruntime_version",
    "mamkpd_version",
    "git_commit",
    "git_dirty",
    "seed",
    "checkpoint_sha256",
    "timestamp",
    "notes",
)
NUMERIC_COLUMNS: tuple[str, ...] = (
    "paper_value",
    "measured_value",
    "delta",
    "tolerance",
    "batch_size",
    "warmup_iterations",
    "timed_iterations",
    "timed_rounds",
    "median",
    "iqr",
)

STATUS_REPRODUCED = "reproduced"  # within tolerance of the paper
STATUS_DIFFERS = "differs"  # outside tolerance; status_reason says how
STATUS_MEASURED = "measured"  # no paper value to compare with (CPU FPS, a ratio, a second convention)
STATUS_NOT_RUN = "not run"  # status_reason says why (no GPU, no data, no checkpoint)
FINDING_METRIC = "finding"  # rows whose notes column holds a finding: "<title>: <text>"
STATUSES = (STATUS_REPRODUCED, STATUS_DIFFERS, STATUS_MEASURED, STATUS_NOT_RUN)
_TITLE_SEPARATOR = ": "


def finding_notes(title: str, text: str) -> str:
    """The notes cell of a finding row: its title (a sentence, no colon) and its text."""
    if _TITLE_SEPARATOR in title:
        raise ValueError(f"a finding's title may not contain {_TITLE_SEPARATOR!r}: {title!r}")
    return f"{title}{_TITLE_SEPARATOR}{text}" if text else title


def split_finding(notes: str) -> tuple[str, str]:
    """(title, text) of a finding row's notes; a note without a title is titled by its first sentence."""
    title, sep, text = notes.partition(_TITLE_SEPARATOR)
    if not sep:
        title, sep, text = notes.partition(". ")
    title, text = title.strip().rstrip("."), text.strip()
    return title[:1].upper() + title[1:], text


class _Flock:
    """An exclusive ``flock`` on a lock file, what filelock's FileLock takes on Unix: for machines without
    filelock (a bare GPU machine running scripts/gpu_check.sh). One object, many ``with`` blocks."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout, self._fd = path, timeout, None

    def __enter__(self):
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(f"lock {self.path} still held after {self.timeout:.0f} s") from None
                time.sleep(0.05)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self._fd)  # closing the file releases the lock
        self._fd = None


def file_lock(path: str, timeout: float):
    """An exclusive lock on the file ``path`` across processes (filelock's, or a plain ``flock``), waiting up to
    ``timeout`` seconds."""
    try:
        from filelock import FileLock
    except ImportError:
        return _Flock(path, timeout)
    return FileLock(path, timeout=timeout)


def default_store_path() -> Path:
    """The store path: ``$MAMKPD_RESULTS`` or ``results/results.csv`` (gitignored)."""
    return Path(os.environ.get("MAMKPD_RESULTS", "results/results.csv"))


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def judge(
    paper: float | None, measured: float | None, tolerance: float | None, tolerance_kind: str = "abs"
) -> tuple[str, float | None]:
    """Status and delta (measured − paper) of one comparison.

    ``tolerance_kind`` is ``"abs"`` (in the metric's unit) or ``"rel"`` (a fraction of the paper value).
    """
    if tolerance_kind not in ("abs", "rel"):
        raise ValueError(f"tolerance_kind must be 'abs' or 'rel', got {tolerance_kind!r}")
    if _missing(measured):
        return STATUS_NOT_RUN, None
    if _missing(paper):
        return STATUS_MEASURED, None
    delta = float(measured) - float(paper)
    if _missing(tolerance):
        raise ValueError("a comparison with a paper value needs a tolerance")
    allowed = float(tolerance) * (abs(float(paper)) if tolerance_kind == "rel" else 1.0)
    return (STATUS_REPRODUCED if abs(delta) <= allowed + 1e-12 else STATUS_DIFFERS), delta


def _cell(value: Any) -> str:
    """One CSV cell: booleans lower-case, sizes as HxW, no line breaks (one row = one line), text in UTF-8 (a
    file name that is not, such as a checkpoint's, keeps its readable part and shows each other byte as �)."""
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return " ".join(utf8_text(str(value)).splitlines())


def utf8_text(text: str) -> str:
    """``text`` that encodes as UTF-8: the bytes of a non-UTF-8 file name (surrogate escapes) become �."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class StoreContents:
    """What a read found: the rows, any torn lines (1-based line number, text) and any lines whose
    values are not data (1-based line number, what is wrong), both skipped."""

    frame: pd.DataFrame
    torn_lines: list[tuple[int, str]] = field(default_factory=list)
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)


def _invalid_values(frame: pd.DataFrame) -> pd.Series:
    """Per row of a store read as text: what is not data in it ("" when nothing)."""
    problems = pd.Series("", index=frame.index, dtype=str)
    for name in NUMERIC_COLUMNS:
        text = frame[name].str.strip()
        bad = (text != "") & pd.to_numeric(text, errors="coerce").isna()
        problems[bad] = problems[bad] + f"{name} " + frame.loc[bad, name].map(repr) + " is not a number; "
    bad = ~frame["status"].isin(STATUSES)
    problems[bad] = problems[bad] + "status " + frame.loc[bad, "status"].map(repr) + " is not a known status; "
    return problems.str.rstrip("; ")


class ResultsStore:
    """Append-only CSV of measurements at ``path`` (see the module docstring for the guarantees)."""

    def __init__(self, path: str | os.PathLike | None = None, lock_timeout_s: float = 120.0):
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = file_lock(str(self.path) + ".lock", lock_timeout_s)

    # -- writing -------------------------------------------------------------------------------
    def record(
        self,
        *,
        table: str,
        row: str,
        model: str,
        metric: str,
        paper: float | None = None,
        measured: float | None = None,
        tolerance: float | None = None,
        tolerance_kind: str = "abs",
        status: str | None = None,
        status_reason: str = "",
        **protocol: Any,
    ) -> dict[str, str]:
        """Append one measurement; machine, software versions and timestamp are filled in.

        ``status`` is judged from paper/measured/tolerance unless given (e.g. ``"not run"`` with a
        ``status_reason``). ``protocol`` holds any other column of :data:`COLUMNS` (unknown names
        raise ValueError). Returns the row as written.
        """
        if status is None:
            status, delta = judge(paper, measured, tolerance, tolerance_kind)
        elif status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        else:  # the caller decided (e.g. figures from different GPUs are shown, not judged)
            delta = None if _missing(paper) or _missing(measured) else float(measured) - float(paper)
        values: dict[str, Any] = {**machine_info(str(protocol.get("device") or "cpu")), **environment_info()}
        values.update(timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        values.update(protocol)
        values.update(
            table=table,
            row=row,
            model=model,
            metric=metric,
            paper_value=paper,
            measured_value=measured,
            delta=delta,
            tolerance=tolerance,
            tolerance_kind=tolerance_kind if not _missing(tolerance) else "",
            status=status,
            status_reason=status_reason,
        )
        return self.append(values)

    def record_finding(
        self, *, table: str, row: str, model: str, text: str, title: str = "", **protocol: Any
    ) -> dict[str, str]:
        """Append a finding about the paper: a title (a sentence) and its text, which the report lists
        under Findings; ``row`` is the finding's key.

        The text should be built from measured values at the time they are measured, so the report
        never carries a number in prose that was not measured in that run.
        """
        notes = finding_notes(title, text) if title else text
        return self.record(
            table=table, row=row, model=model, metric=FINDING_METRIC, status=STATUS_MEASURED, notes=notes, **protocol
        )

    def append(self, values: dict[str, Any]) -> dict[str, str]:
        """Append ``values`` (column → value) as one row; missing columns are empty."""
        unknown = sorted(set(values) - set(COLUMNS))
        if unknown:
            raise ValueError(f"results store {self.path}: unknown columns {unknown}; known: {', '.join(COLUMNS)}")
        cells = {name: _cell(values.get(name)) for name in COLUMNS}
        line = pd.DataFrame([cells], columns=list(COLUMNS)).to_csv(index=False, header=False, lineterminator="\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # less the umask
            try:
                size = os.fstat(fd).st_size
                prefix = ""
                if size == 0:
                    prefix = ",".join(COLUMNS) + "\n"
                else:
                    self._check_header()
                    if not self._ends_with_newline(size):
                        prefix = "\n"  # seal a torn line left by someone else so that ours stays whole
                data = (prefix + line).encode("utf-8")
                if os.write(fd, data) != len(data):
                    raise OSError(f"results store {self.path}: short write (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
        return cells

    def check_writable(self) -> None:
        """Refuse, before any measuring, a store this version cannot append to (a folder, another header)."""
        if self.path.is_dir():
            raise ValueError(f"results store {self.path} is a folder; name a CSV file (--store)")
        if self.path.is_file() and self.path.stat().st_size:
            self._check_header()

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            return handle.read(1) == b"\n"

    def _check_header(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split(",")
        if tuple(header) != COLUMNS:
            earlier = "; `mamkpd report --store` still reads it" if _earlier_header(header) else ""
            raise ValueError(
                f"results store {self.path} has columns {header[:5]}... that differ from this version's "
                f"({len(COLUMNS)} columns); write to a new store (set MAMKPD_RESULTS){earlier}"
            )

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> StoreContents:
        """All complete rows (numeric columns as floats, others as strings) and any torn lines."""
        if not self.path.exists():
            return StoreContents(pd.DataFrame(columns=list(COLUMNS)))
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        if not text:  # created but never written (the first append writes the header): an empty store
            return StoreContents(pd.DataFrame(columns=list(COLUMNS)))
        header = next(csv.reader([text.split("\n", 1)[0]]))
        records, torn = _csv_records(text, len(header))
        if not records or records[0][0] != 1 or not _earlier_header(header):
            raise ValueError(
                f"results store {self.path}: unexpected header; expected the {len(COLUMNS)} "
                f"columns of mamkpd.harness.store.results.COLUMNS"
            )
        good = records[1:]
        numbers = [number for number, _ in good]
        # a store written before a column was added reads with that column empty
        frame = pd.DataFrame([fields for _, fields in good], columns=header, dtype=str)
        frame = frame.reindex(columns=list(COLUMNS), fill_value="")
        problems = _invalid_values(frame)
        invalid = [(numbers[i], problems.iloc[i]) for i in range(len(frame)) if problems.iloc[i]]
        frame = frame[problems == ""].reset_index(drop=True)
        for name in NUMERIC_COLUMNS:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
        return StoreContents(frame, sorted(torn), invalid)


def _earlier_header(header: list[str]) -> bool:
    """Whether ``header`` is this version's, or an earlier one's: some of :data:`COLUMNS`, in their order, with
    the comparison and status columns every version has."""
    if len(set(header)) != len(header) or not {"table", "row", "model", "metric", "status"} <= set(header):
        return False
    positions = [COLUMNS.index(name) if name in COLUMNS else -1 for name in header]
    return min(positions) >= 0 and positions == sorted(positions)


def _csv_records(text: str, columns: int) -> tuple[list[tuple[int, list[str]]], list[tuple[int, str]]]:
    """The CSV records of ``text`` that have ``columns`` cells, with the 1-based line each starts on, and the
    torn lines (line, text).

    A quoted cell may hold a line break: a record ends where its quotes balance, not at every newline.
    A line that starts no whole record (a write cut inside a quoted cell, or short of cells) is torn on its
    own and reading resumes at the next line, so that it cannot swallow the rows after it; so is a last
    record without its newline (a write that never finished)."""
    lines = text.split("\n")
    ends_whole = lines[-1] == ""
    if ends_whole:
        lines.pop()
    quotes = [line.count('"') for line in lines]
    records, torn = [], []
    start = 0
    while start < len(lines):
        end, open_quotes = start, quotes[start] % 2
        while open_quotes and end + 1 < len(lines):
            end += 1
            open_quotes = (open_quotes + quotes[end]) % 2
        if not lines[start] and end == start:
            start += 1
            continue
        fields = None if open_quotes else next(csv.reader(["\n".join(lines[start : end + 1])]))
        unfinished = end == len(lines) - 1 and not ends_whole
        if fields is None or unfinished or (start and len(fields) != columns):
            torn.append((start + 1, lines[start]))
            start += 1  # resume at the next line: a torn line never swallows whole rows after it
            continue
        records.append((start + 1, fields))
        start = end + 1
    return records, torn
