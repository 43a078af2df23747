"""Reference logits on MLX: a model folder, optionally with an adapter (unfused), or with its
weights replaced (e.g. by the de-quantized weights read back from a GGUF file).

Export verification compares every artifact against these; they always run in float32 so the
reference itself adds no rounding.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np

from ...errors import UserError


def load(model_dir: str | Path, adapter_dir: str | Path | None = None):
    """An mlx-lm model in float32 (quantized layers keep their packed weights, with float32
    scales), with the adapter attached unfused as mlx-lm's LoRA/DoRA layers."""
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model

    try:
        model, config = load_model(Path(model_dir))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"cannot load the model: {e}", file=str(model_dir)) from None
    model.set_dtype(mx.float32)
    if adapter_dir is not None:
        try:
            load_adapters(model, str(adapter_dir))
        except ValueError as e:  # mlx-lm lists every mismatching tensor; the first says it
            lines = str(e).splitlines()
            raise UserError("the adapter does not fit this base: " + lines[min(1, len(lines) - 1)]
                            .strip(), file=str(adapter_dir),
                            hint="pass the base model the adapter was trained on") from None
    model.eval()
    mx.eval(model.parameters())
    return model, config


def replace_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Load `weights` (Hugging Face names, every parameter of the model) into `model`."""
    model.load_weights([(k, mx.array(np.asarray(v, dtype=np.float32))) for k, v in
                        weights.items()], strict=True)
    mx.eval(model.parameters())


def logits(model, prompts: list[list[int]]) -> list[np.ndarray]:
    """Float32 logits, one (len(prompt), vocab) array per prompt (run one by one: no padding)."""
    out = []
    for ids in prompts:
        y = model(mx.array([ids], dtype=mx.int32))[0].astype(mx.float32)  # (L, V)
        out.append(np.array(y))
    return out


def folder_logits(model_dir, prompts, adapter_dir=None) -> list[np.ndarray]:
    model, _ = load(model_dir, adapter_dir)
    return logits(model, prompts)


def weights_logits(model_dir, weights: dict[str, np.ndarray], prompts) -> list[np.ndarray]:
    """Logits of the architecture of `model_dir` running `weights` instead of its own."""
    model, _ = load(model_dir)
    replace_weights(model, weights)
    return logits(model, prompts)
