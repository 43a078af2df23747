"""Optimizers by recipe name, with the MLX backend's hyper-parameters, and their state stored in
the MLX backend's layout.

Same steps as backends/mlx/optimizers.py: Adam-family with bias correction, betas (0.9, 0.999),
eps 1e-8, decoupled weight decay for adamw; plain SGD (L2 decay); Adafactor with a fixed learning
rate (transformers' port, the same fairseq algorithm MLX ports).

The state file uses MLX's names and shapes (`model.layers.0.self_attn.q_proj.lora_a.m` (in, r),
a top-level `step`), so a checkpoint resumes on either backend.
"""

from __future__ import annotations

import torch

from ...recipe import Recipe

# torch state key -> MLX state key, per optimizer
_NAMES = {
    "adamw": {"exp_avg": "m", "exp_avg_sq": "v"},
    "adam": {"exp_avg": "m", "exp_avg_sq": "v"},
    "sgd": {"momentum_buffer": "v"},
    "adafactor": {"exp_avg_sq": "exp_avg_sq", "exp_avg": "exp_avg",
                  "exp_avg_sq_row": "exp_avg_sq_row", "exp_avg_sq_col": "exp_avg_sq_col"},
}
# Adafactor factors a matrix by rows and columns; in the transposed layout they trade places.
_SWAP = {"exp_avg_sq_row": "exp_avg_sq_col", "exp_avg_sq_col": "exp_avg_sq_row"}


def _adafactor(t, params):
    from transformers.optimization import Adafactor

    return Adafactor(params, lr=t.learning_rate, relative_step=False, scale_parameter=False,
                     warmup_init=False)


# One builder per registry.OPTIMIZERS name this backend trains (tests/test_registry.py checks
# the two agree): (TrainSpec, parameters) -> optimizer; the loop sets the learning rate.
BUILDERS = {
    "adamw": lambda t, params: torch.optim.AdamW(params, lr=t.learning_rate, betas=(0.9, 0.999),
                                                 eps=1e-8, weight_decay=t.weight_decay),
    "adam": lambda t, params: torch.optim.Adam(params, lr=t.learning_rate, betas=(0.9, 0.999),
                                               eps=1e-8),
    "adafactor": _adafactor,
    "sgd": lambda t, params: torch.optim.SGD(params, lr=t.learning_rate,
                                             weight_decay=t.weight_decay),
}


def make_optimizer(recipe: Recipe, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Build the recipe's optimizer (setup() has refused the ones this backend lacks)."""
    return BUILDERS[recipe.train.optimizer](recipe.train, params)


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _mlx_key(kind: str, key: str, transposed: bool) -> str | None:
    name = _NAMES[kind].get(key)
    return _SWAP.get(name, name) if transposed else name


def state_to_mlx(opt, kind: str, params: dict, step: int) -> dict[str, torch.Tensor]:
    """Flat {mlx name: tensor} of the optimizer state after `step` updates; `params` maps mlx
    names to (parameter, transposed)."""
    flat: dict[str, torch.Tensor] = {}
    for name, (p, transposed) in params.items():
        state = opt.state.get(p, {})
        for key, value in state.items():
            mlx_key = _mlx_key(kind, key, transposed)
            if mlx_key is None or not isinstance(value, torch.Tensor):
                continue
            value = value.T if transposed and value.ndim == 2 else value
            flat[f"{name}.{mlx_key}"] = value.detach().contiguous()
        if kind == "sgd" and f"{name}.v" not in flat:  # MLX's SGD keeps a (zero) momentum
            flat[f"{name}.v"] = torch.zeros_like(p.detach().T if transposed else p.detach())
    flat["step"] = torch.tensor(step, dtype=torch.int64)
    flat["learning_rate"] = torch.tensor(opt.param_groups[0]["lr"], dtype=torch.float32)
    return flat


def state_from_mlx(opt, kind: str, params: dict, flat: dict[str, torch.Tensor]) -> int:
    """Restore what `state_to_mlx` (or the MLX backend's save_state) wrote; return the step."""
    step = int(flat["step"]) if "step" in flat else 0
    if step == 0:
        return 0
    for name, (p, transposed) in params.items():
        state = {}
        for key in _NAMES[kind]:
            value = flat.get(f"{name}.{_mlx_key(kind, key, transposed)}")
            if value is None:
                continue
            value = value.T if transposed and value.ndim == 2 else value
            state[key] = value.to(torch.float32).clone().contiguous()
        if kind == "sgd" and opt.param_groups[0].get("momentum", 0) == 0:
            state = {}  # MLX's zero "v" means nothing to plain SGD
        if kind == "adafactor":
            state.update(step=step, RMS=0.0)
        elif kind in ("adam", "adamw"):
            state["step"] = torch.tensor(float(step), dtype=torch.float32)
        opt.state[p] = state
    return step
