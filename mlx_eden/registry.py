"""One table per option family that more than one room needs to know about.

Before, optimizer names lived in five places (the recipe's Literal, two `make_optimizer`s, the
planner's bytes and update copies, `--fit`'s lighter choices) and the planner silently counted 0
bytes for a name it did not know. Now the recipe's Literal, each backend's builder table, the
planner and `--fit` read (or are checked against, tests/test_registry.py) these tables, and a
backend that lacks a choice is refused here with the reason, before anything loads.

Neutral: no framework import, so the planner and the CLI use it on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:  # recipe.py reads this module's tables
    from .recipe import Recipe

F32 = 4
BACKENDS = ("mlx", "torch")

# --------------------------------------------------------------------------- optimizers

ADAM8_BLOCK = 64  # values per float32 scale in adamw8bit (backends/mlx/optimizers.py BLOCK)


def _adam(shape: tuple[int, ...]) -> int:
    return 2 * math.prod(shape) * F32  # two float32 moments


def _adam8(shape: tuple[int, ...]) -> int:
    blocks = -(-math.prod(shape) // ADAM8_BLOCK)  # two 8-bit codes + one float32 scale per block
    return 2 * blocks * (ADAM8_BLOCK + F32)


def _adafactor(shape: tuple[int, ...]) -> int:
    # No first moment; a matrix keeps float32 row and column second moments only.
    return (shape[0] + shape[1]) * F32 if len(shape) == 2 else math.prod(shape) * F32


def _sgd(shape: tuple[int, ...]) -> int:
    # MLX's SGD keeps a float32 velocity even at momentum 0 (its init_single always makes one).
    return math.prod(shape) * F32


@dataclass(frozen=True)
class OptimizerSpec:
    """What every room needs to know about one `train.optimizer` choice.

    state_bytes: optimizer state for one trainable tensor of this shape.
    update_copies: transient copies of one update group the step makes (measured on the MLX
        backend with update.py's streamed update; adamw8bit dequantizes both moments and
        re-quantizes them, hence 3), counted over the tensors in flight (planner.py).
    group_copies: full-size temporaries that every tensor of the group holds at once
        (Adafactor's, see planner.update_transient).
    lighter: what `--fit` may switch to, lightest state last.
    backends: the backends that build it; `refusal` says why the others do not."""

    name: str
    state_bytes: Callable[[tuple[int, ...]], int]
    update_copies: float
    lighter: tuple[str, ...]
    backends: tuple[str, ...] = BACKENDS
    refusal: str = ""
    group_copies: float = 0.0


OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in (
    OptimizerSpec("adamw", _adam, 1.0, ("adamw8bit", "adafactor")),
    OptimizerSpec("adamw8bit", _adam8, 3.0, ("adafactor",), ("mlx",),
                  "adamw8bit is written for MLX (backends/mlx/optimizers.py); the torch backend "
                  "has no 8-bit optimizer"),
    OptimizerSpec("adam", _adam, 1.0, ("adamw8bit", "adafactor")),
    OptimizerSpec("adafactor", _adafactor, 1.0, (), group_copies=1.0),
    # in place: all its update holds is the gradient norm's squares (planner.norm_squares)
    OptimizerSpec("sgd", _sgd, 0.0, ()),
)}


def optimizer_spec(name: str) -> OptimizerSpec:
    """The spec of `name`; an unknown name is a bug in the recipe's Literal, not user input."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise KeyError(f"optimizer {name!r} is not in mlx_eden/registry.py OPTIMIZERS") from None


# --------------------------------------------------------------------------- other families

QUANT_BITS = (2, 3, 4, 5, 6, 8)       # MLX affine quantization (model.quantize.bits)
QUANT_GROUPS = (32, 64, 128)          # model.quantize.group_size
EXPORT_QUANT_BITS = (4, 8)            # what `fuse --requantize` and `tiny --quantize` offer

EXIT_DOES_NOT_FIT = 3  # `plan` and `train` when the memory plan does not fit; 2 is "bad input"

# The streamed optimizer update (backends/mlx/update.py) evaluates this many bytes of parameters
# at a time; the planner counts one group of update transients.
UPDATE_GROUP_BYTES = 64 << 20


def dropout_seed(seed: int, step: int) -> int:
    """The RNG seed of optimizer step `step`: dropout masks depend only on (seed, step), so a
    resumed run draws the same ones, on either backend."""
    return seed * 1_000_003 + step


# --------------------------------------------------------------------------- backend support

def unsupported(recipe: Recipe, backend: str) -> list[tuple[str, str]]:
    """(recipe key, reason) for every choice of `recipe` that `backend` cannot train."""
    gaps = []
    spec = optimizer_spec(recipe.train.optimizer)
    if backend not in spec.backends:
        gaps.append(("train.optimizer", spec.refusal))
    if backend == "torch" and recipe.adapter.init == "loftq":
        gaps.append(("adapter.init", "LoftQ initializes a base quantized at load time (QLoRA), "
                     "which trains on the mlx backend only"))
    if backend == "torch" and recipe.model.quantize.bits:
        gaps.append(("model.quantize.bits", "QLoRA (a quantized base) trains on the mlx "
                     "backend only"))
    return gaps


def check_supported(recipe: Recipe, backend: str) -> None:
    """Raise a UserError naming the key and the reason when `backend` cannot train `recipe`."""
    gaps = unsupported(recipe, backend)
    if gaps:
        key, why = gaps[0]
        raise UserError(f"--backend {backend} cannot train this recipe: {why}", key=key,
                        hint="use --backend mlx, or change " + ", ".join(k for k, _ in gaps))
