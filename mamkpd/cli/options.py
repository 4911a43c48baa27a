"""Options several commands share, declared once."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import get_type_hints

from ..engine.config import TrainConfig

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


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def parse_json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type of a size: a whole number >= 1 (``--input-size``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _optional(parse):
    return lambda text: None if text.lower() == "none" else parse(text)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per TrainConfig field (defaults left as None = "not given")."""
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        hint = str(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        shown = "none" if default is None else " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {shown})"
        if "dict" in hint:
            parser.add_argument(flag, type=parse_json_dict, metavar="JSON", help=help_text)
        elif f.name == "input_size":
            parser.add_argument(flag, type=positive_int, nargs=2, help=help_text, **extra)
        elif "tuple" in hint:
            item = float if "float" in hint else int
            parser.add_argument(flag, type=item, nargs="+", metavar="N", help=help_text)
        elif "bool" in hint:
            # "--amp" alone means true; "--amp false" turns a default-on flag off
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="BOOL", help=help_text)
        else:
            base = int if "int" in hint else float if "float" in hint else str
            parse = _optional(base) if "None" in hint and base is not str else base
            extra.setdefault("metavar", {int: "N", float: "X"}.get(base))
            parser.add_argument(flag, type=parse, help=help_text, **extra)


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig from parsed arguments: options given on the command line replace ``base``'s values."""
    values = (base or TrainConfig()).to_dict()
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)
