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
from .chunked_loss import cross_entropy

OPS = O.Ops(log_sigmoid=lambda x: -nn.softplus(-x), sigmoid=mx.sigmoid, maximum=mx.maximum,
            stop_gradient=mx.stop_gradient, where=mx.where, to_float=lambda a: float(a.item()))


def row_logps(model, inputs: mx.array, targets: mx.array, weights: mx.array,
              checkpoint: bool = False) -> mx.array:
    """(B,) sum of log p(target) over each row's trained positions (one sample per row)."""
    h = M.hidden_states(model, inputs, "causal", checkpoint)
    arrays, fn = M.head_parts(M.head_module(model))
    logits = fn(h, arrays).astype(mx.float32)
    return -(cross_entropy(logits, targets) * weights).sum(axis=1)


def _arrays(b):
    return mx.array(b.inputs), mx.array(b.targets), mx.array(b.mask)


class PreferenceSteps:
    """The compiled DPO/KTO micro-step (loss, gradients, metric sums) of one model.

    Compiled like the SFT micro-step (backend._build): uncompiled, MLX's value_and_grad of this
    loss took ~3 s per 8x64 micro-batch of the tiny model on the shared 2-core box, most of it
    per-op dispatch. The reference, counts and labels are inputs, so one trace serves every
    batch of a shape; the KTO KL rows' log-probabilities are a separate no-gradient pass."""

    def __init__(self, model, recipe):
        t = recipe.train
        state = [model.state, mx.random.state]

        def step(inputs, targets, weights, ref, counts, labels, kl_rows=None):
            n = labels.shape[0]

            def loss(inputs, targets, weights):
                pi = row_logps(model, inputs, targets, weights, t.grad_checkpoint)
                if kl_rows is not None:
                    pi = mx.concatenate([pi, kl_rows])
                return O.compute(OPS, t.objective, pi, ref, counts, labels, n, t)

            # value_and_grad differentiates the first output; the metrics ride along.
            return nn.value_and_grad(model, loss)(inputs, targets, weights)

        def kl_pass(inputs, targets, weights):
            return mx.stop_gradient(row_logps(model, inputs, targets, weights))

        self.model, self.objective = model, t.objective
        self._step = mx.compile(step, inputs=state, outputs=state)
        self._kl = mx.compile(kl_pass, inputs=state, outputs=state)

    def __call__(self, batch):
        """(summed loss, gradients, metric sums) of one preference micro-batch."""
        inputs, targets, weights = _arrays(batch)
        n = batch.items
        extra = (mx.array(batch.reference.astype(np.float32)),
                 mx.array(batch.counts.astype(np.float32)), mx.array(batch.labels))
        if self.objective == "kto":  # the KL rows carry no gradient: a forward of their own
            kl_rows = self._kl(inputs[n:], targets[n:], weights[n:])
            (total, metrics), grads = self._step(inputs[:n], targets[:n], weights[:n], *extra,
                                                 kl_rows)
        else:
            (total, metrics), grads = self._step(inputs, targets, weights, *extra)
        return total, grads, metrics


def loss_only(model, batch, recipe):
    """(summed loss, metric sums) without gradients (validation)."""
    pi = row_logps(model, *_arrays(batch))
    return O.compute(OPS, batch.objective, pi, mx.array(batch.reference.astype(np.float32)),
                     mx.array(batch.counts.astype(np.float32)), mx.array(batch.labels),
                     batch.items, recipe.train)
