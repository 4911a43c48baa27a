"""Load checkpoints in the layouts the model zoos ship, strictly and with a report.

The loader is generic: it unwraps the containers checkpoints come in (``state_dict``, ``model``,
``module.`` prefixes), then lets the model say how foreign key layouts map onto its own names. A model
declares ``checkpoint_layouts``: a sequence of :class:`KeyLayout` (for example "MMPose 0.x":
``keypoint_head.*`` -> ``head.*``). The loader tries the model's own names and each declared layout,
picks the one that matches the most keys, applies its tensor fixes (such as ViTPose's class-token
position slot) and loads. Anything missing, unexpected or of the wrong shape is named in the error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .checkpoint_file import read_checkpoint

__all__ = [
    "KeyLayout",
    "LoadReport",
    "CheckpointMismatchError",
    "load_weights",
    "load_weights_from_state",
    "read_state_dict",
    "unwrap_state_dict",
    "apply_layout",
    "prefix_rules",
    "NATIVE_LAYOUT",
]

# BatchNorm's step counter: absent from checkpoints saved before PyTorch 0.4.1 (the original HRNet and
# SimpleBaseline releases) and without effect on the forward pass, so its absence is not an error.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_CONTAINER_KEYS = ("state_dict", "model", "module")
_MAX_NAMES_SHOWN = 20  # per kind, in the report's summary
_MAX_NAMES_IN_ERROR = 3  # per kind, in the one-line error

TensorFix = Callable[[Tensor, torch.Size], tuple[Tensor, str]]


@dataclass(frozen=True)
class KeyLayout:
    """How one published key layout maps onto a model's own parameter names.

    ``rules`` are ``(regex, replacement)`` pairs tried in order on each source key; the first that
    matches renames it (``re.sub`` with count 1). Keys matching ``drop`` (training-only state such as a
    data preprocessor's buffers) are discarded before matching. ``fixes`` maps a target key to a function
    ``(tensor, expected_shape) -> (tensor, note)`` that adapts a tensor whose stored form differs from the
    model's (the note is recorded in the report). ``input_channels`` is the channel order of the images the
    release was trained and tested on ("rgb" or "bgr"; always with the RGB ImageNet statistics), where the
    layout implies one: loading sets the model's ``input_channels`` to it.
    """

    name: str
    description: str
    rules: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()
    fixes: Mapping[str, TensorFix] = field(default_factory=dict)
    input_channels: str | None = None

    def rename(self, key: str) -> str | None:
        if any(re.search(pattern, key) for pattern in self.drop):
            return None
        for pattern, replacement in self.rules:
            if re.search(pattern, key):
                return re.sub(pattern, replacement, key, count=1)
        return key


NATIVE_LAYOUT = KeyLayout("native", "this suite's own parameter names (also checkpoints written by its engine)")


@dataclass
class LoadReport:
    """What :func:`load_weights` did."""

    path: str
    layout: str
    loaded: int  # tensors copied into the model
    matched: int = 0  # tensors that fit the model by name and shape (all of them loaded unless the load failed)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs model shape"
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def one_line(self, model: str = "the model") -> str:
        """The mismatch in one line: how many tensors are missing, unexpected or of another shape, a few names each."""
        parts = []
        for title, names in (
            ("missing from the checkpoint", self.missing),
            ("unexpected in the checkpoint", self.unexpected),
            ("of another shape", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:_MAX_NAMES_IN_ERROR]) + (", ..." if len(names) > _MAX_NAMES_IN_ERROR else "")
                parts.append(f"{len(names)} {title} ({shown})")
        return (
            f"{self.path} does not match {model} (closest layout {self.layout!r}, {self.matched} tensors fit): "
            + "; ".join(parts)
        )

    def summary(self) -> str:
        lines = [f"{self.path}: layout {self.layout!r}, {self.loaded} tensors loaded"]
        for title, names in (
            ("missing from the checkpoint", self.missing),
            ("unexpected in the checkpoint", self.unexpected),
            ("shape mismatches", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:_MAX_NAMES_SHOWN])
                more = f" ... and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else ""
                lines.append(f"  {len(names)} {title}: {shown}{more}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class CheckpointMismatchError(ValueError):
    """A strict load found missing, unexpected or wrongly shaped tensors: a one-line message with counts and
    a few names of each kind; ``report`` lists them all (``report.summary()``)."""

    def __init__(self, report: LoadReport, model: str = "the model"):
        super().__init__(report.one_line(model))
        self.report = report


def read_state_dict(path: str | os.PathLike, trust: bool = False) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` inside a checkpoint file, whatever container it ships in.

    The file is read with ``weights_only=True`` (:func:`~mamkpd.models.checkpoint_file.read_checkpoint`);
    ``trust=True`` loads a file refused that way as a full pickle, for a file the caller vouches for.
    """
    return unwrap_state_dict(read_checkpoint(path, trust=trust), source=str(path))


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """Descend through ``state_dict`` / ``model`` containers and strip a common ``module.`` prefix."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{source}: no state dict found (expected a mapping of tensors, possibly under one of {_CONTAINER_KEYS})"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{source}: the state dict holds no tensors (keys: {list(obj)[:10]})")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel / DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def apply_layout(state: Mapping[str, Tensor], layout: KeyLayout) -> tuple[dict[str, Tensor], list[str]]:
    """Rename ``state`` by ``layout``; returns the renamed dict and the source keys it dropped."""
    out: dict[str, Tensor] = {}
    dropped = []
    for key, value in state.items():
        new = layout.rename(key)
        if new is None:
            dropped.append(key)
        else:
            out[new] = value
    return out, dropped


def _layouts_of(model: nn.Module) -> list[KeyLayout]:
    declared = list(getattr(model, "checkpoint_layouts", ()))
    native = next((lay for lay in declared if lay.name == NATIVE_LAYOUT.name), NATIVE_LAYOUT)
    return [native] + [lay for lay in declared if lay.name != NATIVE_LAYOUT.name]


def _is_optional(key: str) -> bool:
    return key.endswith(_OPTIONAL_SUFFIXES)


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    strict: bool = True,
    layout: str | None = None,
    trust: bool = False,
    model_name: str | None = None,
) -> LoadReport:
    """Load ``path`` into ``model`` in whichever of the model's declared layouts fits it best.

    ``layout`` forces one layout by name. Strict (the default): any missing or unexpected key or shape
    mismatch raises :class:`CheckpointMismatchError` naming them, and nothing is loaded. Not strict:
    the matching tensors are loaded and the rest is listed in the report. ``trust``: see
    :func:`read_state_dict`. ``model_name`` names the model in errors.
    """
    state = read_state_dict(path, trust=trust)
    return load_weights_from_state(model, state, strict=strict, layout=layout, source=str(path), model_name=model_name)


def load_weights_from_state(
    model: nn.Module,
    state: Mapping[str, Tensor],
    strict: bool = True,
    layout: str | None = None,
    source: str = "state dict",
    model_name: str | None = None,
) -> LoadReport:
    """:func:`load_weights` on an in-memory state dict."""
    target = model.state_dict()
    layouts = _layouts_of(model)
    if layout is not None:
        layouts = [lay for lay in layouts if lay.name == layout]
        if not layouts:
            raise ValueError(
                f"unknown layout {layout!r} for {type(model).__name__}; known: "
                f"{[lay.name for lay in _layouts_of(model)]}"
            )

    def fit(lay: KeyLayout) -> tuple[int, int]:
        renamed, _ = apply_layout(state, lay)
        matched = sum(1 for k in renamed if k in target)
        return matched, matched - len(renamed)  # most keys matched, then fewest left over

    best = max(layouts, key=fit)  # max keeps the first of equal fits: native, then declared order
    renamed, _ = apply_layout(state, best)
    report = LoadReport(path=source, layout=best.name, loaded=0)
    to_load: dict[str, Tensor] = {}
    for key, value in renamed.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        expected = target[key].shape
        if key in best.fixes and value.shape != expected:
            value, note = best.fixes[key](value, expected)
            report.notes.append(f"{key}: {note}")
        if value.shape != expected:
            report.mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected)}")
            continue
        to_load[key] = value
    report.missing = [k for k in target if k not in renamed and not _is_optional(k)]
    report.matched = len(to_load)
    if strict and not report.clean:
        raise CheckpointMismatchError(report, model_name or type(model).__name__)
    result = model.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    assert not result.unexpected_keys, result.unexpected_keys  # filtered above
    if best.input_channels is not None:  # the images these weights expect follow from where they came from
        model.input_channels = best.input_channels
        report.notes.append(f"input images in {best.input_channels.upper()} order, as the {best.name} release")
    return report


def prefix_rules(mapping: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``(old_prefix, new_prefix)`` pairs as anchored regex rules."""
    return tuple((f"^{re.escape(old)}", new) for old, new in mapping)
