"""New-token rows (recipe `tokens.add`) on PyTorch, with peft's trainable tokens
(LoraConfig trainable_token_indices): peft swaps the embedding's rows at those ids for a small
trainable (n, D) tensor and, for a tied model, uses the same tensor for the head's columns; an
untied lm_head gets its own. Stored like the MLX backend's (tokens.safetensors "embed"/"head"),
so a run moves between backends and exports alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ...tokens import (
    TOKEN_ROWS,
    TOKENS_FILE,
    TokenPlan,
    check_same_tokens,
    read_tokens,
    tokens_info,
)

# peft parameter name -> the MLX backend's (backends/mlx/tokens.py: the wrappers' `rows`)
PEFT_ROWS = {"model.embed_tokens.token_adapter.trainable_tokens_delta.default":
             "model.embed_tokens.rows",
             "lm_head.token_adapter.trainable_tokens_delta.default": "lm_head.rows"}
FILE_KEY = {"model.embed_tokens.rows": "embed", "lm_head.rows": "head"}


def tied(lm) -> bool:
    return bool(getattr(lm.config, "tie_word_embeddings", False))


def token_indices(plan: TokenPlan | None, lm) -> dict | None:
    """LoraConfig.trainable_token_indices for the plan (None: no new tokens)."""
    if plan is None:
        return None
    return {"embed_tokens": plan.ids} | ({} if tied(lm) else {"lm_head": plan.ids})


def _start(weight: torch.Tensor, plan: TokenPlan) -> torch.Tensor:
    """The rows' start value, as the MLX backend computes it (float32 mean)."""
    w = weight.detach().float()
    rows = w[list(plan.init_ids)] if plan.init_ids else w[: plan.first_id]
    return rows.mean(dim=0).expand(len(plan.tokens), -1).clone()


def init_rows(peft_model, plan: TokenPlan | None) -> None:
    """Set peft's trainable-token tensors to the recipe's init, in float32."""
    if plan is None:
        return
    for module in peft_model.base_model.model.modules():
        if hasattr(module, "trainable_tokens_delta") and "default" in module.trainable_tokens_delta:
            p = module.trainable_tokens_delta["default"]
            p.data = _start(module.base_layer.weight, plan)  # float32 whatever the base dtype


def save_rows(params: dict, plan: TokenPlan | None, lm, directory: Path) -> None:
    if plan is None:
        return
    rows = {FILE_KEY[k]: p.detach().float().contiguous() for k, (p, _) in params.items()
            if k in FILE_KEY}
    save_file(rows, str(directory / TOKEN_ROWS))
    (directory / TOKENS_FILE).write_text(json.dumps(tokens_info(plan, tied(lm)), indent=2))


def load_rows(params: dict, plan: TokenPlan | None, directory: Path) -> None:
    check_same_tokens(read_tokens(directory), plan, str(directory))
    if plan is None:
        return
    saved = load_file(str(Path(directory) / TOKEN_ROWS))
    with torch.no_grad():
        for k, key in FILE_KEY.items():
            if k in params:
                params[k][0].copy_(saved.get(key, saved["embed"]))
