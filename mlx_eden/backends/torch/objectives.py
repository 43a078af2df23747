"""DPO/KTO on torch: per-row answer log-probabilities with gradients, and the loss of a
preference batch. The formula itself is mlx_eden/objectives.py (shared with MLX)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ... import objectives as O
from . import model as M

OPS = O.Ops(log_sigmoid=F.logsigmoid, sigmoid=torch.sigmoid,
            maximum=lambda x, v: torch.clamp(x, min=v), stop_gradient=lambda x: x.detach(),
            where=torch.where, to_float=lambda a: float(a))


def row_logps(peft_model, inputs, targets, weights) -> torch.Tensor:
    """(B,) sum of log p(target) over each row's trained positions (one sample per row)."""
    lm = M.causal_lm(peft_model)
    h = lm.model(input_ids=inputs, use_cache=False).last_hidden_state
    logits = lm.lm_head(h).float()
    picked = -F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="none")
    return (picked.view(targets.shape) * weights).sum(dim=1)


def _tensors(b):
    return (torch.from_numpy(b.inputs).long(), torch.from_numpy(b.targets).long(),
            torch.from_numpy(b.mask))


def batch_loss(peft_model, batch, recipe):
    """(summed loss with its graph, metric sums) of one preference micro-batch."""
    inputs, targets, weights = _tensors(batch)
    n = batch.items
    if batch.objective == "kto":  # the KL rows carry no gradient: a forward pass of their own
        with torch.no_grad():
            kl_rows = row_logps(peft_model, inputs[n:], targets[n:], weights[n:])
        pi = torch.cat([row_logps(peft_model, inputs[:n], targets[:n], weights[:n]), kl_rows])
    else:
        pi = row_logps(peft_model, inputs, targets, weights)
    ref = torch.from_numpy(batch.reference.astype(np.float32))
    counts = torch.from_numpy(batch.counts.astype(np.float32))
    labels = torch.from_numpy(batch.labels)
    return O.compute(OPS, batch.objective, pi, ref, counts, labels, n, recipe.train)
