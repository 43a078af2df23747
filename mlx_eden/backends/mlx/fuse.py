"""Merge an adapter into its base with mlx-lm's own LoRA/DoRA `fuse`, always into de-quantized
float32 weights (a small delta added to 4-bit weights and re-quantized can round away); the
cast to the output dtype happens once, at the end."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from . import inference
from .model import DTYPES
from .tokens import unwrap_rows, write_rows


def fused_model(model_dir: str | Path, adapter_dir: str | Path | None, dtype: str):
    """(model, config): base + adapter merged, de-quantized, cast to `dtype`."""
    from mlx_lm.utils import dequantize_model

    model, config = inference.load(model_dir, adapter_dir)
    fused = [(name, m.fuse(dequantize=True)) for name, m in model.named_modules()
             if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    model = dequantize_model(model)
    if adapter_dir is not None:
        unwrap_rows(model)  # the rows go into the (now float) embedding and head themselves
        write_rows(model, Path(adapter_dir))
    model.set_dtype(DTYPES[dtype])
    mx.eval(model.parameters())
    return model, config


def requantize(model, config: dict, bits: int, group_size: int):
    """MLX affine quantization of the fused model (explicit opt-in: `fuse --requantize`)."""
    from mlx_lm.utils import quantize_model

    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints a bits-per-weight line
        model, config = quantize_model(model, config, group_size, bits)
    mx.eval(model.parameters())
    return model, config


def save_weights(model, out_dir: Path, max_shard_bytes: int) -> list[str]:
    """Write the parameters in Hugging Face names as safetensors shards (+ index when more than
    one), tagged format=pt so every Hugging Face loader accepts them. mlx-lm's `save_model`
    tags them "mlx" and shards only by whole gigabytes, hence this small writer."""
    weights = dict(tree_flatten(model.parameters()))
    shards: list[dict] = [{}]
    size = 0
    for name in sorted(weights):
        w = weights[name]
        if shards[-1] and size + w.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = w
        size += w.nbytes
    names = ["model.safetensors"] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for file, shard in zip(names, shards, strict=True):
        mx.save_safetensors(str(out_dir / file), shard, metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(w.nbytes for w in weights.values())},
                 "weight_map": {k: f for f, s in zip(names, shards, strict=True) for k in s}}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return names


def model_logits(model, prompts: list[list[int]]) -> list[np.ndarray]:
    return inference.logits(model, prompts)
