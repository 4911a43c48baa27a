"""Weights drawn from their names, so that an official model and the suite's, built apart, hold the same values.

Each tensor of a state_dict gets a generator seeded by the CRC32 of its key: conv and linear weights
normal(0, 1/fan-in), norm gains 1 + N(0, 0.1), biases and running means N(0, 0.1), running variances
U(0.5, 1.5). ``tests/fixtures/make_reference_fixtures.py`` fills the official models with this in its
throwaway environment and the tests fill the suite's models, with torch only (no suite import).
"""

from __future__ import annotations

import math
import zlib

import torch


def seeded_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    x = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        return x / math.sqrt(math.prod(shape[1:]))
    if name.endswith(".weight"):  # a norm's gain
        return 1.0 + 0.1 * x
    return 0.1 * x


@torch.no_grad()
def fill_seeded(model: torch.nn.Module, keep: tuple[str, ...] = ()) -> list[str]:
    """Overwrite every floating-point tensor of ``model``'s state_dict except those whose key ends with one of
    ``keep`` (tables the model computes, such as a sine position table); returns the keys filled, sorted."""
    filled = []
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or name.endswith(keep):
            continue
        tensor.copy_(seeded_tensor(name, tuple(tensor.shape)))
        filled.append(name)
    return sorted(filled)
