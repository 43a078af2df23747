"""Model loading, adapters and the loss on MLX, reusing mlx-lm's modules.

We run the decoder ourselves (embed → mlx-lm's own blocks → norm → head) instead of calling
`model(inputs)` because training needs three things mlx-lm's forward cannot take: a block-diagonal
mask for packed rows, per-layer gradient checkpointing on *this* model instance (mlx-lm patches
the class globally), and a loss that never materialises the full logits.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ...adapters import adapted_layers, lora_a_init, module_keys
from ...errors import UserError
from ...recipe import Recipe
from .checkpoint import KeyedDropout, layer_forward
from .chunked_loss import ce_sum, checkpointed_ce_sum, chunked_ce_sum
from .chunked_loss import head_parts as _plain_head_parts
from .tokens import RowsEmbedding, RowsHead, is_token_key, rows_head_parts

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def load_base(path: Path, spec, dtype: str) -> tuple[nn.Module, dict]:
    """Load with mlx-lm; cast to the compute dtype (resolved: never "auto"); quantize for QLoRA
    if the recipe asks.

    An MLX-quantized folder stays as it is; a float folder is quantized at load time.
    """
    from mlx_lm.utils import load_model, quantize_model

    try:
        model, config = load_model(Path(path), lazy=True)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"cannot load the model: {e}", file=str(path)) from None
    model.set_dtype(DTYPES[dtype])
    if "quantization" not in config and spec.quantize.bits:
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints a bits-per-weight line
            model, config = quantize_model(model, config, spec.quantize.group_size,
                                           spec.quantize.bits)
    # One tensor at a time: evaluating all at once reads every stored tensor before converting
    # any (MLX schedules breadth-first), so a 32B bf16 checkpoint quantized at load would need
    # its full 65 GB; this way the peak is the result plus one stored tensor. Largest first:
    # a cast or quantized tensor briefly holds its stored copy beside what is already loaded,
    # so the big ones (embedding, untied head) go while little is resident (descending size
    # minimises that peak; a float32 checkpoint cast to bf16 with an untied 32,768 x 256 head
    # peaked at 69.6 MiB in file order, 64.0 this way; memory/load.py prices it).
    for array in sorted((a for _, a in tree_flatten(model.parameters())),
                        key=lambda a: a.nbytes, reverse=True):
        mx.eval(array)
    return model, config


def inner(model):
    """The decoder stack (embed_tokens, layers, norm) of a Qwen-family mlx-lm model."""
    return model.model


def add_adapters(model: nn.Module, recipe: Recipe) -> list[str]:
    """Freeze the base and add LoRA/DoRA layers (mlx-lm's) with our seeded init.

    Returns the names of the adapted modules."""
    from .tuner import tuner_utils

    linear_to_lora_layers = tuner_utils().linear_to_lora_layers
    a = recipe.adapter
    layers = inner(model).layers
    count = len(adapted_layers(len(layers), a.layers))
    model.freeze()
    linear_to_lora_layers(model, count, {"rank": a.rank, "scale": a.scale, "dropout": a.dropout,
                                         "keys": module_keys(a.target_names)},
                          use_dora=a.type == "dora")
    names = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_a") and a.dropout > 0:
            module.dropout = KeyedDropout(a.dropout)  # replayable by gradient checkpointing
        if hasattr(module, "lora_a"):
            in_dims = module.lora_a.shape[0]
            module.lora_a = mx.array(lora_a_init(name, in_dims, a.rank, recipe.train.seed))
            module.lora_b = mx.zeros_like(module.lora_b)
            names.append(name)
    return names


def allowed_pairs(segments: mx.array) -> mx.array:
    """(B, 1, L, L) bool: causal, and only within the same sample of a packed row.

    Positions are not restarted per sample: RoPE depends only on the distance between query and
    key, and the mask keeps every attended pair inside one sample, so the scores equal those of
    the sample on its own (the packing test checks this to 1e-5)."""
    L = segments.shape[1]
    idx = mx.arange(L)
    causal = idx[:, None] >= idx[None, :]
    same = segments[:, :, None] == segments[:, None, :]
    return mx.expand_dims(same & causal, 1)


def attention_mask(segments: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, 1, L, L) additive mask in the compute dtype: 0 where `allowed_pairs`, else the dtype's
    most negative finite value.

    Why additive: MLX's unfused attention applies a bool mask as `where(mask, scores, min)`,
    whose gradient was one more B x heads x L x L square in the backward whenever MLX did not
    donate it a buffer (a race by size; memory/attention.mask_bytes); `scores + mask`
    passes the gradient through unchanged. Why the finite minimum, not -inf: it is the value
    the `where` writes, so a row with nothing attended (none here: every row keeps its
    diagonal) gives the same uniform softmax instead of NaN, and `scores + min` rounds to
    `min` for any score below ~1e31, so the scores equal the bool mask's bit for bit."""
    return mx.where(allowed_pairs(segments), mx.array(0, dtype),
                    mx.array(mx.finfo(dtype).min, dtype))


def compute_dtype(model) -> mx.Dtype:
    """The dtype the decoder computes in: its final RMSNorm's weight (cast by load_base; never
    quantized)."""
    return inner(model).norm.weight.dtype


def layer_mask(segments: mx.array, packed: bool, blockwise: bool, dtype: mx.Dtype):
    """What the decoder layers get as their mask: the segment ids themselves for the blockwise
    attention (backends/mlx/attention.py; all one segment when not packed), else an additive
    mask (packed) or "causal"."""
    if blockwise:
        return segments if packed else mx.zeros_like(segments)
    return attention_mask(segments, dtype) if packed else "causal"


def hidden_states(model, inputs: mx.array, mask, checkpoint: bool) -> mx.array:
    """(B, L) ids → (B, L, D) final normed hidden states."""
    m = inner(model)
    h = m.embed_tokens(inputs)
    for layer in m.layers:
        h = layer_forward(layer, h, mask, checkpoint)
    return m.norm(h)


def head_module(model) -> nn.Module:
    """The output projection: lm_head, or the tied input embedding."""
    if getattr(model.args, "tie_word_embeddings", False) or not hasattr(model, "lm_head"):
        return inner(model).embed_tokens
    return model.lm_head


def head_parts(module):
    """The head's arrays and function; a head with new-token rows (tokens.add) adds them."""
    if isinstance(module, (RowsEmbedding, RowsHead)):
        return rows_head_parts(module)
    return _plain_head_parts(module)


def head(model, h: mx.array) -> mx.array:
    arrays, fn = head_parts(head_module(model))
    return fn(h, arrays)


def loss_sum(model, inputs, targets, weights, segments, *, packed: bool, checkpoint: bool,
             chunk: int, grad: bool = True, blockwise: bool = False,
             rows: mx.array | None = None) -> mx.array:
    """Summed cross-entropy over trained targets (the caller divides by their count).

    grad=False (evaluation) skips the work that only the backward pass needs. `rows` (N,):
    flat positions (into B x L) at which to compute the head and the loss; targets and weights
    are then (N,), already taken at those positions (see data/batching.py `loss_positions`)."""
    mask = layer_mask(segments, packed, blockwise, compute_dtype(model))
    h = hidden_states(model, inputs, mask, checkpoint)  # (B, L, D)
    module = head_module(model)
    arrays, fn = head_parts(module)
    B, L, D = h.shape
    if rows is not None:  # the trained positions only: (N, D)
        h = h.reshape(B * L, D)[rows]
    elif chunk:
        h, targets, weights = h.reshape(B * L, D), targets.reshape(-1), weights.reshape(-1)
    if not chunk:
        return ce_sum(fn, h, targets, weights, arrays, hold_head=True)
    if grad and tree_flatten(module.trainable_parameters()):
        return checkpointed_ce_sum(fn, arrays, h, targets, weights, chunk)
    return chunked_ce_sum(fn, arrays, h, targets, weights, chunk, grad=grad)


def adapter_weights(model) -> dict[str, mx.array]:
    """The LoRA/DoRA tensors (new-token rows are saved apart: backends/mlx/tokens.py)."""
    return {k: v for k, v in tree_flatten(model.trainable_parameters()) if not is_token_key(k)}


def count_params(model) -> tuple[int, int]:
    from mlx_lm.utils import get_total_parameters

    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return int(get_total_parameters(model)), int(trainable)


def to_numpy(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)
