"""Optimizers by recipe name. Adam-family optimizers use bias correction, as PyTorch does, so the
two backends take the same steps."""

from __future__ import annotations

import mlx.optimizers as optim


def make_optimizer(t) -> optim.Optimizer:
    """Build the optimizer of TrainSpec `t`; the learning rate is set by the loop each step."""
    lr = t.learning_rate
    if t.optimizer == "adamw":
        return optim.AdamW(learning_rate=lr, betas=[0.9, 0.999], eps=1e-8,
                           weight_decay=t.weight_decay, bias_correction=True)
    if t.optimizer == "adam":
        return optim.Adam(learning_rate=lr, betas=[0.9, 0.999], eps=1e-8, bias_correction=True)
    if t.optimizer == "adafactor":
        # Fixed learning rate from our schedule, not Adafactor's relative step size.
        return optim.Adafactor(learning_rate=lr, relative_step=False, scale_parameter=False,
                               warmup_init=False)
    if t.optimizer == "sgd":
        return optim.SGD(learning_rate=lr, weight_decay=t.weight_decay)
    raise ValueError(f"unknown optimizer {t.optimizer}")
