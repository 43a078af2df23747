"""Backend-neutral adapter facts: the mlx-lm adapter_config.json, the module keys, and a seeded
initialisation both backends share (so a torch run and an MLX run start from the same weights).

Weights are stored the mlx-lm way: `model.layers.N.self_attn.q_proj.lora_a` with shape
(in, r) and `lora_b` (r, out), plus `m` (out,) for DoRA.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .errors import UserError
from .qwen import PROJECTION_PARENT
from .recipe import Recipe
from .safeio import read_json_object

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_DIR = "peft"  # optional sub-folder: the same adapter in PEFT's format (torch backend)

MODULE_PARENT = PROJECTION_PARENT  # projection -> its parent module (mlx-lm / transformers)


def module_keys(targets) -> list[str]:
    """Projection names → mlx-lm's per-layer keys, e.g. q_proj → self_attn.q_proj."""
    return [f"{MODULE_PARENT[t]}.{t}" for t in targets]


def adapted_layers(n_layers: int, layers: int) -> range:
    """Indices of the decoder layers that get adapters: the last `layers`, or all for -1."""
    count = n_layers if layers == -1 else min(layers, n_layers)
    return range(n_layers - count, n_layers)


def adapter_config(recipe: Recipe, n_layers: int, base_model: str,
                   dtype: str | None = None) -> dict:
    """adapter_config.json in mlx-lm's schema (so `mlx_lm.generate --adapter-path` loads it),
    with our own facts kept under "eden" (alpha and rsLoRA, which mlx-lm folds into scale)."""
    a, q = recipe.adapter, recipe.model.quantize
    # the base as trained, for QLoRA only: a float base quantized at load time is quantized the
    # same way again by export --verify's "trained" reference (absent: the base as stored)
    quantize = {"quantize": {"bits": q.bits, "group_size": q.group_size,
                             "dtype": dtype or recipe.model.dtype}} if q.bits else {}
    return {
        "fine_tune_type": a.type,
        "num_layers": len(adapted_layers(n_layers, a.layers)),
        "lora_parameters": {"rank": a.rank, "scale": a.scale, "dropout": a.dropout,
                            "keys": module_keys(a.target_names)},
        "model": base_model,
        "eden": {"alpha": a.alpha, "rslora": a.rslora, "targets": list(a.target_names),
                 "layers": a.layers, "model_layers": n_layers, **quantize,
                 **({"loftq": {"iters": a.loftq_iters}} if a.init == "loftq" else {})},
    }


def read_adapter_config(directory: str | Path) -> dict:
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise UserError("not an adapter folder (no adapter_config.json)", file=str(directory),
                        hint="point at a run's adapter/ or best/ folder")
    return read_json_object(path, "adapter_config.json")


def check_compatible(saved: dict, wanted: dict, where: str) -> None:
    """An adapter continued from (adapter.init_from) must have the same structure."""
    a, b = saved.get("lora_parameters", {}), wanted["lora_parameters"]
    problems = []
    if saved.get("fine_tune_type", "lora") != wanted["fine_tune_type"]:
        problems.append(f"type {saved.get('fine_tune_type')} vs {wanted['fine_tune_type']}")
    if a.get("rank") != b["rank"]:
        problems.append(f"rank {a.get('rank')} vs {b['rank']}")
    if sorted(a.get("keys") or []) != sorted(b["keys"]):
        problems.append(f"targets {a.get('keys')} vs {b['keys']}")
    if saved.get("num_layers") != wanted["num_layers"]:
        problems.append(f"layers {saved.get('num_layers')} vs {wanted['num_layers']}")
    if problems:
        raise UserError("adapter does not match the recipe's adapter: " + "; ".join(problems),
                        file=where, hint="continue with the same adapter.type, rank, targets "
                        "and layers as the run that wrote it")


def lora_a_init(name: str, in_dims: int, rank: int, seed: int) -> np.ndarray:
    """U(-1/sqrt(in), 1/sqrt(in)), shape (in, r): mlx-lm's LoRA init, and the bound of PEFT's
    kaiming_uniform(a=sqrt(5)); seeded per module name so it does not depend on build order."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    bound = 1.0 / np.sqrt(in_dims)
    return rng.uniform(-bound, bound, size=(in_dims, rank)).astype(np.float32)
