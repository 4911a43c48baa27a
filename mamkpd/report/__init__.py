"""Reports: the paper's tables beside the results store, findings, figures (``mamkpd report``)."""

from .build import (
    DEFAULT_OUT_DIR,
    EXAMPLE_MARKER,
    Report,
    build_report,
    check_out_dir,
    portable,
    run_log_section,
    write_report,
    write_run_log,
)

__all__ = [
    "DEFAULT_OUT_DIR",
    "EXAMPLE_MARKER",
    "Report",
    "build_report",
    "check_out_dir",
    "portable",
    "run_log_section",
    "write_report",
    "write_run_log",
]
