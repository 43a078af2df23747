"""Optimizers by recipe name. Adam-family optimizers use bias correction, as PyTorch does, so the
two backends take the same steps.

`adamw8bit` keeps Adam's two moments in 8 bits (blockwise, with a float32 scale per block of 64
values): 2.1 bytes of state per trainable value instead of fp32 AdamW's 8. That is what
bitsandbytes' `paged_adamw_8bit` buys on CUDA; MLX has no such optimizer, so it is written here
(on top of mlx.optimizers.Optimizer, so state saving and resume work unchanged).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.optimizers as optim

from ...recipe import Recipe
from ...registry import ADAM8_BLOCK

BLOCK = ADAM8_BLOCK  # values per scale: small blocks keep a block's large values from
# drowning small ones


# One builder per registry.OPTIMIZERS name this backend trains (tests/test_registry.py checks
# the two agree); each takes the TrainSpec, the learning rate is set by the loop each step.
BUILDERS = {
    "adamw": lambda t: optim.AdamW(learning_rate=t.learning_rate, betas=[0.9, 0.999], eps=1e-8,
                                   weight_decay=t.weight_decay, bias_correction=True),
    "adamw8bit": lambda t: AdamW8bit(learning_rate=t.learning_rate, weight_decay=t.weight_decay),
    "adam": lambda t: optim.Adam(learning_rate=t.learning_rate, betas=[0.9, 0.999], eps=1e-8,
                                 bias_correction=True),
    # A fixed learning rate from our schedule, not Adafactor's relative step size.
    "adafactor": lambda t: optim.Adafactor(learning_rate=t.learning_rate, relative_step=False,
                                           scale_parameter=False, warmup_init=False),
    "sgd": lambda t: optim.SGD(learning_rate=t.learning_rate, weight_decay=t.weight_decay),
}


def make_optimizer(recipe: Recipe) -> optim.Optimizer:
    """Build the recipe's optimizer (setup() has refused the ones this backend lacks)."""
    return BUILDERS[recipe.train.optimizer](recipe.train)


def _blocks(x: mx.array) -> mx.array:
    """Flatten to (n_blocks, BLOCK) float32, zero-padded."""
    flat = x.astype(mx.float32).reshape(-1)
    pad = (-flat.size) % BLOCK
    if pad:
        flat = mx.concatenate([flat, mx.zeros((pad,), mx.float32)])
    return flat.reshape(-1, BLOCK)


def _unblock(b: mx.array, like: mx.array) -> mx.array:
    return b.reshape(-1)[: like.size].reshape(like.shape)


# Companding maps: linear 8-bit codes lose Adam's small moments entirely (a block's largest value
# takes all the range), and a second moment rounded to zero turns m / sqrt(v) into m / eps. A
# square-root code for m and a fourth-root code for v spend the 8 bits on relative precision:
# ~0.8% at a block's largest value, ~3% at 1/20 of it (m) or 1/100 of it (v), and a value is
# only lost below 1/16000 (m) or 1/4e9 (v) of the block's largest.

def quantize_signed(x: mx.array) -> tuple[mx.array, mx.array]:
    """(n, BLOCK) float32 -> int8 codes sign*sqrt(|x|/s)*127 and the per-block scale s."""
    s = mx.max(mx.abs(x), axis=1, keepdims=True)
    r = mx.sqrt(mx.abs(x) / mx.maximum(s, 1e-30))
    return (mx.sign(x) * mx.round(r * 127)).astype(mx.int8), s


def dequantize_signed(q: mx.array, s: mx.array) -> mx.array:
    r = q.astype(mx.float32) / 127
    return mx.sign(r) * r * r * s


def quantize_positive(x: mx.array) -> tuple[mx.array, mx.array]:
    """(n, BLOCK) float32 >= 0 -> uint8 codes (x/s)^(1/4)*255 and the per-block scale s."""
    s = mx.max(x, axis=1, keepdims=True)
    r = mx.sqrt(mx.sqrt(x / mx.maximum(s, 1e-30)))
    return mx.round(r * 255).astype(mx.uint8), s


def dequantize_positive(q: mx.array, s: mx.array) -> mx.array:
    r = q.astype(mx.float32) / 255
    r2 = r * r
    return r2 * r2 * s


class AdamW8bit(optim.Optimizer):
    """AdamW (decoupled weight decay, bias correction) with 8-bit blockwise moments.

    Each step dequantizes the stored moments, updates them in float32 with this step's gradient,
    takes the step with the float32 values, and stores them quantized again; so rounding
    enters only through the previous moments."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay

    def init_single(self, parameter: mx.array, state: dict):
        n = math.ceil(parameter.size / BLOCK)
        state["m_q"] = mx.zeros((n, BLOCK), mx.int8)
        state["m_s"] = mx.zeros((n, 1), mx.float32)
        state["v_q"] = mx.zeros((n, BLOCK), mx.uint8)
        state["v_s"] = mx.zeros((n, 1), mx.float32)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        b1, b2 = self.betas
        lr = self.learning_rate.astype(mx.float32)
        step = self.step.astype(mx.float32)
        g = _blocks(gradient)
        m = b1 * dequantize_signed(state["m_q"], state["m_s"]) + (1 - b1) * g
        v = b2 * dequantize_positive(state["v_q"], state["v_s"]) + (1 - b2) * g * g
        state["m_q"], state["m_s"] = quantize_signed(m)
        state["v_q"], state["v_s"] = quantize_positive(v)
        c1 = lr / (1 - b1**step)
        c2 = mx.rsqrt(1 - b2**step)
        delta = _unblock(c1 * m / (mx.sqrt(v) * c2 + self.eps), parameter)
        decayed = parameter * (1 - lr * self.weight_decay)
        return (decayed - delta).astype(parameter.dtype)
