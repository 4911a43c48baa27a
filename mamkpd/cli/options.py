"""Options several commands share, declared once."""

from __future__ import annotations

import argparse

from ..engine.config import positive_int

TRUST_HELP = (
    "load a checkpoint that torch.load(weights_only=True) refuses as a full pickle, which can run code from "
    "the file: only for a file you trust"
)


def add_input_size(parser: argparse.ArgumentParser, default_text: str) -> None:
    """``--input-size H W``: two positive whole numbers, checked when the command line is parsed (each model
    then checks its own constraint, such as a multiple of its stride)."""
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=positive_int,
        metavar=("H", "W"),
        help=f"input height and width in pixels (default: {default_text})",
    )


def add_scan_backend(parser: argparse.ArgumentParser) -> None:
    """``--scan-backend NAME``: the selective-scan backend of models that have one, from the registry of
    backends; the command records the one that ran."""
    from ..ops import AUTO, SCAN_BACKEND_CHOICES, SCAN_BACKENDS

    described = "; ".join(f"{name}: {b.description}" for name, b in SCAN_BACKENDS.items())
    parser.add_argument(
        "--scan-backend",
        default=AUTO,
        choices=SCAN_BACKEND_CHOICES,
        metavar="NAME",
        help=f"selective-scan backend of models with a scan, one of {', '.join(SCAN_BACKEND_CHOICES)} "
        f"(default: {AUTO}, the best one available on the device). {described}",
    )


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
