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
from . import loftq
from .model import DTYPES, load_base
from .tokens import attach_rows


def load(model_dir: str | Path, adapter_dir: str | Path | None = None, as_trained: bool = False):
    """An mlx-lm model in float32 (quantized layers keep their packed weights, with float32
    scales), with the adapter attached unfused as mlx-lm's LoRA/DoRA layers."""
    from mlx_lm.utils import load_model

    from .tuner import tuner_utils

    load_adapters = tuner_utils().load_adapters

    # A LoftQ adapter corrects its own quantized base (B@A ~ W - deq(Q)): on the float base it
    # would count the correction twice, so it always gets the base it was trained on.
    trained = (_trained_quantization(adapter_dir) if as_trained or _is_loftq(adapter_dir)
               else None)
    if trained:  # the base as the run trained it: a float base quantized at load (QLoRA)
        model, config = load_base(Path(model_dir), trained, trained.dtype)
    else:
        try:
            model, config = load_model(Path(model_dir))
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"cannot load the model: {e}", file=str(model_dir)) from None
    model.set_dtype(mx.float32)
    if adapter_dir is not None:
        loftq.apply_stored_base(model, Path(adapter_dir), wrapped=False)
        try:
            load_adapters(model, str(adapter_dir))
        except ValueError as e:  # mlx-lm lists every mismatching tensor; the first says it
            lines = str(e).splitlines()
            raise UserError("the adapter does not fit this base: " + lines[min(1, len(lines) - 1)]
                            .strip(), file=str(adapter_dir),
                            hint="pass the base model the adapter was trained on") from None
        attach_rows(model, adapter_dir)  # new-token rows (tokens.add), if the adapter has them
    model.eval()
    mx.eval(model.parameters())
    return model, config


def _is_loftq(adapter_dir) -> bool:
    from ...adapters import read_adapter_config

    return adapter_dir is not None and "loftq" in read_adapter_config(adapter_dir).get("eden", {})


def _trained_quantization(adapter_dir):
    """A ModelSpec for loading the base as the adapter's run did, when that run quantized a
    float base at load time (recorded in adapter_config.json's eden.quantize); else None."""
    from ...adapters import read_adapter_config
    from ...recipe import ModelSpec, QuantizeSpec

    if adapter_dir is None:
        return None
    q = read_adapter_config(adapter_dir).get("eden", {}).get("quantize") or {}
    if not q.get("bits"):
        return None
    dtype = q["dtype"] if q["dtype"] in DTYPES else "float32"  # never "auto": resolved in training
    return ModelSpec(dtype=dtype, quantize=QuantizeSpec(q["bits"], q["group_size"]))


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


def greedy(model, prompts: list[list[int]], n: int) -> list[list[int]]:
    """The first `n` greedy tokens after each prompt (mlx-lm's generate_step, argmax sampler,
    EOS not stopping it)."""
    from mlx_lm.generate import generate_step

    return [[int(t) for t, _ in generate_step(mx.array(ids, dtype=mx.int32), model,
                                               max_tokens=n)] for ids in prompts]


def folder_logits(model_dir, prompts, adapter_dir=None) -> list[np.ndarray]:
    model, _ = load(model_dir, adapter_dir)
    return logits(model, prompts)


def folder_outputs(model_dir, prompts, adapter_dir=None, n: int = 32, as_trained: bool = False):
    """(logits, greedy tokens) of a folder (+ adapter): one load for both. `as_trained`: a float
    base the adapter's run quantized at load time is quantized the same way."""
    model, _ = load(model_dir, adapter_dir, as_trained)
    return logits(model, prompts), greedy(model, prompts, n)


def weights_outputs(model_dir, weights: dict[str, np.ndarray], prompts, n: int = 32):
    """(logits, greedy tokens) of the architecture of `model_dir` running `weights`."""
    model, _ = load(model_dir)
    replace_weights(model, weights)
    return logits(model, prompts), greedy(model, prompts, n)


def weights_logits(model_dir, weights: dict[str, np.ndarray], prompts) -> list[np.ndarray]:
    """Logits of the architecture of `model_dir` running `weights` instead of its own."""
    model, _ = load(model_dir)
    replace_weights(model, weights)
    return logits(model, prompts)
