"""Gradient checkpointing of one decoder layer: keep only its input, recompute it in backward.

Why not `mx.checkpoint` (what this replaced): measured on MLX 0.32, its backward peak grew with
the number of layers (+11 MB per layer on a 2-layer model, up to ~2 layers' activations at 8
layers). MLX's checkpoint makes the recomputation wait only for the forward pass, not for the
gradient to reach the layer, and MLX orders a graph breadth-first, so the recomputations of
several layers run early and their activations are alive together. Here the recomputation's
input depends (`mx.depends`) on the incoming gradient, and the gradient a layer passes down
depends on its own parameter gradients, so one layer is recomputed at a time.

Every array the layer reads is an explicit argument (its parameters, frozen or not, the mask and
the dropout key): under `mx.compile` a captured array is a placeholder that cannot be evaluated.

Adapter dropout draws its masks from a key per layer (KeyedDropout), drawn from the global
generator in the forward pass and passed along, so the recomputation draws the same masks again:
with a fresh draw the gradients would belong to different masks than the loss.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from .attention import installed


class KeyedDropout(nn.Module):
    """nn.Dropout that draws from `_key` when one is set (underscore: not a parameter)."""

    def __init__(self, p: float):
        super().__init__()
        self._p_1 = 1 - p
        self._key = None

    def __call__(self, x: mx.array) -> mx.array:
        if self._p_1 == 1 or not self.training:
            return x
        mask = mx.random.bernoulli(self._p_1, x.shape, key=self._key)
        return (mask * x) * (1 / self._p_1)


def keyed_dropouts(layer: nn.Module) -> list[KeyedDropout]:
    """The layer's active adapter dropouts (each module has its own training flag: mlx-lm
    loads the base in eval mode, and the adapters are added in training mode)."""
    return [m for _, m in layer.named_modules()
            if isinstance(m, KeyedDropout) and m._p_1 < 1 and m.training]


def _call(layer: nn.Module, h: mx.array, mask, key: mx.array | None) -> mx.array:
    drops = keyed_dropouts(layer) if key is not None else []
    for d, k in zip(drops, mx.random.split(key, len(drops)) if drops else [], strict=True):
        d._key = k
    try:
        with installed(layer):
            return layer(h, mask)
    finally:
        for d in drops:
            d._key = None


def layer_forward(layer: nn.Module, h: mx.array, mask, checkpoint: bool) -> mx.array:
    """layer(h, mask); with `checkpoint`, its activations are recomputed in backward."""
    key = None
    if keyed_dropouts(layer):
        key = mx.random.randint(0, 2**31 - 1, (2,), dtype=mx.uint32)  # advances the generator
    if not checkpoint:
        return _call(layer, h, mask, key)
    return checkpointed_layer(layer, h, mask, key)


def checkpointed_layer(layer: nn.Module, x: mx.array, mask, key: mx.array | None) -> mx.array:
    trainable = tree_flatten(layer.trainable_parameters())
    names_t = [n for n, _ in trainable]
    everything = dict(tree_flatten(layer.parameters()))
    names_f = [n for n in everything if n not in set(names_t)]
    arrays = [a for _, a in trainable] + [everything[n] for n in names_f]
    n_t, has_mask, has_key = len(names_t), isinstance(mask, mx.array), key is not None
    extra = ([mask] if has_mask else []) + ([key] if has_key else [])

    def run(h, params, m, k):
        layer.update(tree_unflatten(list(zip(names_t + names_f, params, strict=True))))
        return _call(layer, h, m, k)

    def split(args):
        params, rest = list(args[: len(arrays)]), list(args[len(arrays):])
        m = rest.pop(0) if has_mask else mask
        return params, m, (rest.pop(0) if has_key else None)

    @mx.custom_function
    def forward(h, *args):
        params, m, k = split(args)
        return run(h, params, m, k)

    @forward.vjp
    def backward(primals, cotangent, output):
        h, *args = primals
        params, m, k = split(args)
        h = mx.depends(h, cotangent)  # recompute only once the gradient has reached this layer
        frozen = params[n_t:]
        _, grads = mx.vjp(lambda hh, *tp: run(hh, [*tp, *frozen], m, k),
                          [h, *params[:n_t]], [cotangent])
        # The layer below starts recomputing only after this layer's parameter gradients are
        # done: else they wait (breadth-first order) and keep this layer's activations alive.
        dh = mx.depends(grads[0], list(grads[1:]))
        # Frozen parameters, mask and key get no gradient; these zeros are never evaluated.
        rest = [mx.zeros_like(a) for a in (*frozen, *extra)]
        return (dh, *grads[1:], *rest)

    return forward(x, *arrays, *extra)
