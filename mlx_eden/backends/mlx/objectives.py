"""DPO/KTO on MLX: per-row answer log-probabilities with gradients, and the step of a
preference batch. The loss formula itself is mlx_eden/objectives.py (shared with torch).

The log-probabilities come from the full (rows, L, V) logits in float32: one pass, no chunking.
For the tiny models that is nothing; for a 32B model the planner prices it (planner.py)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ... import objectives as O
from . import model as M
from .chunked_loss import cross_entropy, head_parts

OPS = O.Ops(log_sigmoid=lambda x: -nn.softplus(-x), sigmoid=mx.sigmoid, maximum=mx.maximum,
            stop_gradient=mx.stop_gradient, where=mx.where, to_float=lambda a: float(a.item()))


def row_logps(model, inputs: mx.array, targets: mx.array, weights: mx.array,
              checkpoint: bool = False) -> mx.array:
    """(B,) sum of log p(target) over each row's trained positions (one sample per row)."""
    h = M.hidden_states(model, inputs, "causal", checkpoint)
    arrays, fn = head_parts(M.head_module(model))
    logits = fn(h, arrays).astype(mx.float32)
    return -(cross_entropy(logits, targets) * weights).sum(axis=1)


def _arrays(b):
    return mx.array(b.inputs), mx.array(b.targets), mx.array(b.mask)


def micro_step(model, batch, recipe):
    """(summed loss, gradients, metric sums) of one preference micro-batch."""
    t = recipe.train
    inputs, targets, weights = _arrays(batch)
    n = batch.items
    ref = mx.array(batch.reference.astype(np.float32))
    counts = mx.array(batch.counts.astype(np.float32))
    labels = mx.array(batch.labels)
    if batch.objective == "kto":  # the KL rows carry no gradient: a forward pass of their own
        kl_rows = mx.stop_gradient(row_logps(model, inputs[n:], targets[n:], weights[n:]))
        inputs, targets, weights = inputs[:n], targets[:n], weights[:n]

    def loss():
        pi = row_logps(model, inputs, targets, weights, t.grad_checkpoint)
        if batch.objective == "kto":
            pi = mx.concatenate([pi, kl_rows])
        return O.compute(OPS, batch.objective, pi, ref, counts, labels, n, t)

    # value_and_grad differentiates the first output; the metrics ride along (detached inside).
    (total, metrics), grads = nn.value_and_grad(model, loss)()
    return total, grads, metrics


def loss_only(model, batch, recipe):
    """(summed loss, metric sums) without gradients (validation)."""
    pi = row_logps(model, *_arrays(batch))
    return O.compute(OPS, batch.objective, pi, mx.array(batch.reference.astype(np.float32)),
                     mx.array(batch.counts.astype(np.float32)), mx.array(batch.labels),
                     batch.items, recipe.train)
