"""What an alternative architecture reading of MamKPD changes, including what the counter cannot see.

A reading is a set of :class:`~mamkpd.models.mamkpd.MamKPDConfig` overrides
(:data:`~mamkpd.models.mamkpd.ALTERNATIVE_READINGS`). Two checks keep its counts honest:

- Given the default's weights, does it compute the default's outputs? Then it changes only how
  training starts (an initialisation), and no count can differ: it is not counted.
- Does it count exactly as the default does? Then what it changes lies in ops fvcore counts as free.
  The one such op a reading adds or removes is an element-wise multiply (the SS2D-CMM gate: one per
  feature, B·H·W·C per stage, and no parameter), so the multiplies are counted and the difference
  is reported beside the equal counts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from ...models import create_model, model_info
from .complexity import Complexity, fvcore_analysis, measure_complexity

__all__ = ["ReadingEffect", "computes_default_function", "elementwise_multiplies", "measure_reading"]

# small enough to run on a CPU in a blink, divisible by every MamKPD variant's stride
_CHECK_INPUT = (64, 48)
_MULTIPLY_OPS = ("aten::mul", "aten::mul_")


@dataclass
class ReadingEffect:
    model: str
    reading: str
    overrides: dict
    same_function: bool  # with the default's weights it gives the default's outputs: only training differs
    complexity: Complexity | None  # None where same_function: no count can differ
    counts_as_default: bool = False  # params and fvcore MACs equal the default's
    uncounted_multiplies: int | None = None  # per sample, reading minus default; measured where counts_as_default


def computes_default_function(name: str, overrides: dict, input_size: tuple[int, int] = _CHECK_INPUT) -> bool:
    """Whether ``name`` built with ``overrides``, given the default build's weights, returns the default's
    outputs on a random input (False when the weights do not even fit)."""
    torch.manual_seed(0)
    default = create_model(name, input_size=input_size, scan_backend="torch").eval()
    variant = create_model(name, input_size=input_size, **{"scan_backend": "torch", **overrides}).eval()
    try:
        variant.load_state_dict(default.state_dict(), strict=True)
    except RuntimeError:  # other parameter names or shapes: another architecture
        return False
    x = torch.randn(2, 3, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(default(x), variant(x))


def _multiplies_handle(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape

    return math.prod(get_shape(outputs[0]))


def elementwise_multiplies(model: nn.Module, input_size: tuple[int, int], batch: int = 1) -> int:
    """Element-wise multiplies (``aten::mul``, one per output element) of a forward at batch ``batch``:
    the ops fvcore's FLOP count leaves out."""
    model = model.eval()
    x = torch.zeros(batch, 3, *input_size)
    handles = {op: _multiplies_handle for op in _MULTIPLY_OPS}
    with torch.no_grad():
        by_op = fvcore_analysis(model, x, **handles).by_operator()
    return int(sum(by_op.get(op.split("::")[1], 0) for op in _MULTIPLY_OPS))


@functools.cache
def _default_counts(name: str) -> tuple[Complexity, int]:
    size = model_info(name).input_size
    return measure_complexity(name), elementwise_multiplies(create_model(name, input_size=size), size)


def measure_reading(name: str, reading: str, overrides: dict) -> ReadingEffect:
    """Count ``name`` under one reading, with the two checks of the module docstring."""
    if computes_default_function(name, overrides):
        return ReadingEffect(name, reading, overrides, same_function=True, complexity=None)
    counted = measure_complexity(name, **overrides)
    default, default_multiplies = _default_counts(name)
    effect = ReadingEffect(name, reading, overrides, same_function=False, complexity=counted)
    if (counted.params, counted.flops) == (default.params, default.flops):
        size = model_info(name).input_size
        multiplies = elementwise_multiplies(create_model(name, input_size=size, **overrides), size)
        effect.counts_as_default = True
        effect.uncounted_multiplies = multiplies - default_multiplies
    return effect
