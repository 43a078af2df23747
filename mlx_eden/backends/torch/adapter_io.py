"""Adapter weights between peft's modules and mlx-eden's (mlx-lm's) on-disk format.

In memory peft holds `...q_proj.lora_A.default.weight` (r, in), `lora_B...` (out, r) and, for DoRA,
`lora_magnitude_vector.default.weight` (out,). On disk mlx-eden stores `...q_proj.lora_a` (in, r),
`lora_b` (r, out) and `m` (out,), so a CPU-trained adapter fuses and exports exactly like an
MLX-trained one, and an MLX-trained one continues here. This is the in-memory mapping only; the
PEFT *file* format is written by peft itself (`save_peft`). export/peft.py converts files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import UserError
from .tokens import FILE_KEY, PEFT_ROWS

# peft parameter suffix -> (mlx-lm suffix, stored transposed?)
_SUFFIXES = {
    ".lora_A.default.weight": (".lora_a", True),
    ".lora_B.default.weight": (".lora_b", True),
    ".lora_magnitude_vector.default.weight": (".m", False),
}



def mlx_name(peft_name: str) -> tuple[str, bool] | None:
    """`model.layers.0.self_attn.q_proj.lora_A.default.weight` -> (`...q_proj.lora_a`, True)."""
    for suffix, (mlx_suffix, transposed) in _SUFFIXES.items():
        if peft_name.endswith(suffix):
            return peft_name[: -len(suffix)] + mlx_suffix, transposed
    return None


def trainable_by_mlx_name(causal_lm) -> dict[str, tuple[torch.nn.Parameter, bool]]:
    """Every trainable parameter under its mlx-lm name, with whether it is stored transposed."""
    out = {}
    for name, p in causal_lm.named_parameters():
        if not p.requires_grad:
            continue
        mapped = mlx_name(name) or ((PEFT_ROWS[name], False) if name in PEFT_ROWS else None)
        if mapped is None:
            raise RuntimeError(f"unexpected trainable parameter {name}")
        out[mapped[0]] = (p, mapped[1])
    return out


def to_mlx_layout(t: torch.Tensor, transposed: bool) -> torch.Tensor:
    t = t.detach().float()
    return (t.T if transposed else t).contiguous()


def adapter_tensors(params: dict[str, tuple[torch.nn.Parameter, bool]]) -> dict[str, torch.Tensor]:
    """The adapter in mlx-lm names and shapes, float32 (new-token rows are saved apart)."""
    return {k: to_mlx_layout(p, tr) for k, (p, tr) in params.items() if k not in FILE_KEY}


def load_adapter_tensors(params, weights: dict[str, torch.Tensor], where: str) -> None:
    """Copy mlx-layout `weights` into the peft parameters (shapes checked)."""
    missing = sorted(set(params) - set(weights) - set(FILE_KEY))
    if missing:
        raise UserError(f"adapter lacks {len(missing)} tensors, e.g. {missing[0]}", file=where)
    with torch.no_grad():
        for k, (p, transposed) in params.items():
            if k in FILE_KEY:  # new-token rows: tokens.safetensors (tokens.load_rows)
                continue
            w = weights[k].T if transposed else weights[k]
            if tuple(w.shape) != tuple(p.shape):
                raise UserError(f"{k} has shape {tuple(weights[k].shape)}, the model needs "
                                f"{tuple(p.T.shape if transposed else p.shape)}", file=where)
            p.copy_(w.to(p.dtype))


def save_peft(peft_model, directory: Path, base_model: str) -> None:
    """adapter_model.safetensors + adapter_config.json in PEFT's own format, written by peft (so
    `PeftModel.from_pretrained` and vLLM read it), naming the base as the recipe does."""
    config = peft_model.peft_config["default"]
    saved_base = config.base_model_name_or_path
    config.base_model_name_or_path = base_model
    try:
        peft_model.save_pretrained(str(directory), safe_serialization=True)
    finally:
        config.base_model_name_or_path = saved_base
    # peft adds a model-card template full of "[More Information Needed]"; not ours to ship.
    (directory / "README.md").unlink(missing_ok=True)
