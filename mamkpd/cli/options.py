"""Options several commands share, declared once, and the argparse types of their values."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator

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


class RegistryChoices:
    """argparse ``choices`` read from a registry (scan backends, presets, data sets) only when a value is checked
    or ``--help`` lists them, so that a command line is parsed, and a typo answered, without importing torch.
    Give the option a ``metavar``: argparse would otherwise list the choices when the option is added."""

    def __init__(self, load: Callable[[], Iterable[str]]):
        self._load, self._names = load, None

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def __contains__(self, value: object) -> bool:
        return value in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class LazyText:
    """Help text read from a registry when ``--help`` is shown (``%(name)s`` in the help, the object set as
    the action's attribute ``name``): see :class:`RegistryChoices`."""

    def __init__(self, load: Callable[[], str]):
        self._load = load

    def __str__(self) -> str:
        return self._load()


def add_registry_choice(
    parser: argparse.ArgumentParser, flag: str, load: Callable[[], Iterable[str]], **kwargs
) -> argparse.Action:
    """``flag NAME``, one of the names ``load`` returns, read only when needed (:class:`RegistryChoices`)."""
    return parser.add_argument(flag, choices=RegistryChoices(load), metavar="NAME", **kwargs)


def _scan_backend_names() -> tuple[str, ...]:
    from ..ops import SCAN_BACKEND_CHOICES

    return SCAN_BACKEND_CHOICES


def _scan_backends_described() -> str:
    from ..ops import AUTO, SCAN_BACKENDS

    described = "; ".join(f"{name}: {b.description}" for name, b in SCAN_BACKENDS.items())
    return f"(default: {AUTO}, the best one available on the device). {described}"


def add_scan_backend(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--scan-backend NAME``: the selective-scan backend of models that have one, from the registry of
    backends; the command records the one that ran. ``default`` None: "not given" (a config file decides)."""
    action = add_registry_choice(
        parser,
        "--scan-backend",
        _scan_backend_names,
        default=default,
        help="selective-scan backend of models with a scan, one of %(choices)s %(described)s",
    )
    action.described = LazyText(_scan_backends_described)


def _allocators() -> tuple[str, ...]:
    from ..harness.measure.allocator import ALLOCATORS

    return ALLOCATORS


def add_allocator(parser: argparse.ArgumentParser) -> None:
    """``--allocator``: the C allocator setting the timings run under, recorded with each."""
    add_registry_choice(
        parser,
        "--allocator",
        _allocators,
        default="system",
        help="C allocator of the timings, one of %(choices)s (default system: glibc's defaults, what a plain "
        "PyTorch process gets; keep-freed: freed memory kept for reuse, as the benchmarks time, so that a call "
        "does not pay page faults for memory the call before gave back)",
    )


def _scan_forms() -> tuple[str, ...]:
    from ..export import SCAN_FORMS

    return SCAN_FORMS  # the default first


def add_onnx_scan(parser: argparse.ArgumentParser) -> None:
    """``--onnx-scan``: how an ONNX file runs each selective scan (export, and fps with onnxruntime)."""
    add_registry_choice(
        parser,
        "--onnx-scan",
        _scan_forms,
        help="how the ONNX file runs each selective scan, one of %(choices)s: onnx-scan (the default), one ONNX "
        "Scan over time, portable to any ONNX runtime; custom-op, one ai.onnx.contrib node run by mamkpd's own "
        "kernel, about 3x faster in onnxruntime, but the file then runs only in a Python process with mamkpd "
        "and onnxruntime-extensions installed (mamkpd.export.onnx_session), not in OpenVINO or C++ onnxruntime",
    )


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
