"""Model registry: ``create_model(name, **overrides)`` over thin factory functions (timm-style).

MamKPD registers here directly; the baselines package registers through the ``mamkpd.models`` entry
point group, loaded on first lookup, so that this layer never imports a higher one.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import torch.nn as nn

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info"]

ENTRY_POINT_GROUP = "mamkpd.models"
# Packages in this repository that register models; entry points add installed third-party ones.
_BUILTIN_PROVIDERS = ("baselines",)


@dataclass(frozen=True)
class ModelInfo:
    """What the harness needs to know about a registered model besides how to build it."""

    name: str
    factory: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int] = (256, 192)  # (H, W) of one sample
    sample: str = "person crop"  # what one input sample is (RTMO takes a whole image)
    # the codec its authors trained and decoded with: a mamkpd.codecs name ("msra", "udp"), or "rtmo" for
    # RTMO, which decodes its own outputs
    codec: str = "msra"
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelInfo] = {}
_providers_loaded = False


def register_model(
    family: str,
    input_size: tuple[int, int] = (256, 192),
    sample: str = "person crop",
    codec: str = "msra",
    tags: tuple[str, ...] = (),
):
    """Decorator: register ``fn`` under its own name."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY and _REGISTRY[name].factory is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name=name,
            factory=fn,
            family=family,
            input_size=tuple(input_size),
            sample=sample,
            codec=codec,
            tags=tuple(tags),
        )
        return fn

    return wrap


def _load_providers() -> None:
    global _providers_loaded
    if _providers_loaded:
        return
    _providers_loaded = True
    importlib.import_module("mamkpd.models.mamkpd")
    for module in _BUILTIN_PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the provider exists but is broken: say so
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def list_models(pattern: str = "*") -> list[str]:
    _load_providers()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    _load_providers()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; keyword overrides go to its factory (num_keypoints, input_size, config fields)."""
    return model_info(name).factory(**overrides)
