"""Reports: the paper's tables beside the results store, findings, figures (``mamkpd report``)."""

from .build import Report, build_report, run_log_section, write_report

__all__ = ["Report", "build_report", "run_log_section", "write_report"]
