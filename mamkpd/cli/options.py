"""Options several commands share, declared once, and the argparse types of their values."""

from __future__ import annotations

import argparse
import json

TRUST_HELP = (
    "load a checkpoint that torch.load(weights_only=True) refuses as a full pickle, which can run code from "
    "the file: only for a file you trust"
)


def positive_int(text: str) -> int:
    """argparse type of a size: a whole number >= 1 (``--input-size``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def parse_json_dict(text: str) -> dict:
    """argparse type of a JSON object (``--model-kwargs``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_input_size(
    parser: argparse.ArgumentParser, default_text: str, meaning: str = "input height and width in pixels"
) -> None:
    """``--input-size H W``: two positive whole numbers, checked when the command line is parsed (each model
    then checks its own constraint, such as a multiple of its stride). Every command's flag, train's too."""
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=positive_int,
        metavar=("H", "W"),
        help=f"{meaning} (default: {default_text})",
    )


def add_scan_backend(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--scan-backend NAME``: the selective-scan backend of models that have one, from the registry of
    backends; the command records the one that ran. ``default`` None: "not given" (a config file decides)."""
    from ..ops import AUTO, SCAN_BACKEND_CHOICES, SCAN_BACKENDS

    described = "; ".join(f"{name}: {b.description}" for name, b in SCAN_BACKENDS.items())
    parser.add_argument(
        "--scan-backend",
        default=default,
        choices=SCAN_BACKEND_CHOICES,
        metavar="NAME",
        help=f"selective-scan backend of models with a scan, one of {', '.join(SCAN_BACKEND_CHOICES)} "
        f"(default: {AUTO}, the best one available on the device). {described}",
    )


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
