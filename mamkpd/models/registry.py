"""Model registry: ``create_model(name, checkpoint_path=None, **overrides)`` over explicit factory functions,
one per registered model (timm-style).

MamKPD's variants register when the package ``mamkpd.models`` is imported (its ``__init__`` imports
:mod:`mamkpd.models.mamkpd`, which imports this module: this module imports neither). Other packages, this
repository's ``baselines`` included, register through the ``mamkpd.models`` entry-point group of their
packaging metadata (``[project.entry-points."mamkpd.models"]`` in pyproject.toml), loaded on the first
lookup, so that this layer never names a higher one.

Code that treats models differently asks a model's declared abilities (``whole_image``, ``has_scan``,
``codec``, ``heatmap_stride``, ``tolerance_class``, ``dataset``), never its ``family``, which only labels it
for display: a new family then works everywhere without editing a test of its name.
``tests/test_models_contract.py`` checks every registered model against what it declares.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import torch
import torch.nn as nn

from .checkpoint import load_weights

__all__ = [
    "ModelInfo",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "count_params",
    "check_input_size",
]

ENTRY_POINT_GROUP = "mamkpd.models"
# what the registry says when no package registered through the entry points: mamkpd imported from a
# source tree that was never installed, so its own baselines are missing too
NO_PROVIDERS = (
    f"no baselines registered: no package declares the {ENTRY_POINT_GROUP!r} entry points (mamkpd is "
    "imported from a source tree that is not installed); install it with ./install.sh or pip install -e ."
)


@dataclass(frozen=True)
class ModelInfo:
    """What the harness needs to know about a registered model besides how to build it: its abilities."""

    name: str
    factory: Callable[..., nn.Module]
    family: str  # a label for listings and grouping; code asks the abilities below, never this
    input_size: tuple[int, int] = (256, 192)  # (H, W) of one sample
    dataset: str = "coco"  # the data set (mamkpd.data.DATASETS) its default head and input size are for
    # one sample is a whole image (a one-stage model such as RTMO finds the people itself), not a person crop
    whole_image: bool = False
    # the model runs a selective scan, whose implementation its factory takes as ``scan_backend``
    has_scan: bool = False
    # the codec its authors trained and decoded with: a mamkpd.codecs heatmap codec ("msra", "udp"), or the
    # name of the model's own decoding ("rtmo": ``model.decode(model(x))`` gives each image's people)
    codec: str = "msra"
    heatmap_stride: int = 4  # input pixels per output heatmap pixel (heatmap codecs only)
    # how close its counts must come to printed ones: one of mamkpd.paper.tolerances.TOLERANCE_CLASSES,
    # "official" (the authors' architecture) or "reimplementation" (built from the paper's text)
    tolerance_class: str = "official"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sample(self) -> str:
        """What one input sample is, in words."""
        return f"whole image ({self.input_size[0]}x{self.input_size[1]})" if self.whole_image else "person crop"

    @property
    def uses_codec(self) -> bool:
        """Whether its outputs are encoded and decoded by its ``codec``, a mamkpd.codecs codec (heatmaps, SimCC
        vectors); otherwise the model decodes its own outputs (``model.decode``, RTMO)."""
        from ..codecs import CODECS  # on first use: importing it loads OpenCV

        return self.codec in CODECS

    @property
    def trains_top_down(self) -> bool:
        """Whether the suite's top-down trainer and evaluator take it: person crops in, a codec's outputs out
        (heatmaps, or SimCC vectors)."""
        return self.uses_codec and not self.whole_image


_REGISTRY: dict[str, ModelInfo] = {}
_providers_loaded = False
_providers_found = True


def register_model(
    family: str,
    input_size: tuple[int, int] = (256, 192),
    *,
    dataset: str = "coco",
    whole_image: bool = False,
    has_scan: bool = False,
    codec: str = "msra",
    heatmap_stride: int = 4,
    tolerance_class: str = "official",
    tags: tuple[str, ...] = (),
):
    """Decorator: register ``fn`` under its own name, with the abilities :class:`ModelInfo` describes."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY and _REGISTRY[name].factory is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name=name,
            factory=fn,
            family=family,
            input_size=tuple(input_size),
            dataset=dataset,
            whole_image=whole_image,
            has_scan=has_scan,
            codec=codec,
            heatmap_stride=heatmap_stride,
            tolerance_class=tolerance_class,
            tags=tuple(tags),
        )
        return fn

    return wrap


def _load_providers() -> None:
    global _providers_loaded, _providers_found
    if _providers_loaded:
        return
    _providers_loaded = True
    providers = entry_points(group=ENTRY_POINT_GROUP)
    _providers_found = bool(providers)
    if not providers:
        warnings.warn(NO_PROVIDERS, stacklevel=3)
    for provider in providers:
        provider.load()


def list_models(pattern: str = "*") -> list[str]:
    _load_providers()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    _load_providers()
    try:
        return _REGISTRY[name]
    except KeyError:
        missing = "" if _providers_found else f" ({NO_PROVIDERS})"
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}{missing}") from None


def create_model(
    name: str,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    trust: bool = False,
    scan_backend: str | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model; keyword overrides go to its factory (num_keypoints, input_size, config fields).

    ``scan_backend`` (a name of :data:`mamkpd.ops.SCAN_BACKEND_CHOICES`) is the selective-scan backend of a
    model that has one (``has_scan``), resolved for the device the model is built on and again whenever it
    moves; a model without a scan ignores it. None: the factory's default (``auto``).

    ``checkpoint_path`` then loads weights into it strictly, in any layout :func:`load_weights` reads
    (the model zoos' and this suite's own training checkpoints), with ``weights_only=True`` unless
    ``trust`` (a file the caller vouches for).
    """
    info = model_info(name)
    if scan_backend is not None and info.has_scan:
        overrides["scan_backend"] = scan_backend
    model = info.factory(**overrides)
    if checkpoint_path is not None:
        load_weights(model, checkpoint_path, trust=trust, model_name=name)
    return model


def check_input_size(input_size: Sequence[int], stride: int, model: str) -> tuple[int, int]:
    """``input_size`` as an (H, W) tuple of ints, each a positive multiple of the model's total ``stride``;
    otherwise a ValueError naming the model and the constraint. Every factory checks its size with this."""
    try:
        size = tuple(int(s) for s in input_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or any(s <= 0 or s % stride for s in size):
        raise ValueError(
            f"{model}: input_size must be (H, W), both positive multiples of {stride} (its total stride), "
            f"got {tuple(input_size) if isinstance(input_size, Sequence) else input_size!r}"
        )
    return size


def count_params(model: nn.Module | str, **overrides) -> int:
    """Exact parameter count of ``model``; given a registered name, of that model built with factory
    ``overrides`` on the meta device (shapes only: no weights allocated, nothing run)."""
    if isinstance(model, str):
        with torch.device("meta"):
            model = create_model(model, **overrides)
    return sum(p.numel() for p in model.parameters())
