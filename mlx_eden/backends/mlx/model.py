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

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def load_base(path: Path, spec) -> tuple[nn.Module, dict]:
    """Load with mlx-lm; cast to the compute dtype; quantize for QLoRA if the recipe asks.

    An MLX-quantized folder stays as it is; a float folder is quantized at load time.
    """
    from mlx_lm.utils import load_model, quantize_model

    try:
        model, config = load_model(Path(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"cannot load the model: {e}", file=str(path)) from None
    dtype = DTYPES[spec.dtype]
    model.set_dtype(dtype)
    if "quantization" not in config and spec.quantize.bits:
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints a bits-per-weight line
            model, config = quantize_model(model, config, spec.quantize.group_size,
                                           spec.quantize.bits)
    mx.eval(model.parameters())
    return model, config


def inner(model):
    """The decoder stack (embed_tokens, layers, norm) of a Qwen-family mlx-lm model."""
    return model.model


def add_adapters(model: nn.Module, recipe) -> list[str]:
    """Freeze the base and add LoRA/DoRA layers (mlx-lm's) with our seeded init.

    Returns the names of the adapted modules."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    a = recipe.adapter
    layers = inner(model).layers
    count = len(adapted_layers(len(layers), a.layers))
    model.freeze()
    linear_to_lora_layers(model, count, {"rank": a.rank, "scale": a.scale, "dropout": a.dropout,
                                         "keys": module_keys(a.target_names)},
                          use_dora=a.type == "dora")
    names = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_a"):
            in_dims = module.lora_a.shape[0]
            module.lora_a = mx.array(lora_a_init(name, in_dims, a.rank, recipe.train.seed))
            module.lora_b = mx.zeros_like(module.lora_b)
            names.append(name)
    return names


def attention_mask(segments: mx.array) -> mx.array:
    """(B, 1, L, L) bool: causal, and only within the same sample of a packed row.

    Positions are not restarted per sample: RoPE depends only on the distance between query and
    key, and the mask keeps every attended pair inside one sample, so the scores equal those of
    the sample on its own (the packing test checks this to 1e-5)."""
    L = segments.shape[1]
    idx = mx.arange(L)
    causal = idx[:, None] >= idx[None, :]
    same = segments[:, :, None] == segments[:, None, :]
    return mx.expand_dims(same & causal, 1)


def hidden_states(model, inputs: mx.array, mask, checkpoint: bool) -> mx.array:
    """(B, L) ids → (B, L, D) final normed hidden states."""
    m = inner(model)
    h = m.embed_tokens(inputs)
    for layer in m.layers:
        if checkpoint:
            h = _checkpointed(layer, h, mask)
        else:
            h = layer(h, mask)
    return m.norm(h)


def _checkpointed(layer, h, mask):
    """Recompute this layer in the backward pass (per instance; no class patching)."""

    def run(params, x):
        layer.update(params)
        return layer(x, mask)

    return mx.checkpoint(run)(layer.trainable_parameters(), h)


def _head_module(model):
    tied = getattr(model.args, "tie_word_embeddings", False) or not hasattr(model, "lm_head")
    return inner(model).embed_tokens if tied else model.lm_head


def head(model, h: mx.array) -> mx.array:
    module = _head_module(model)
    return module.as_linear(h) if module is inner(model).embed_tokens else module(h)


LOG2E = 1.4426950408889634


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-token cross-entropy, (..., V) logits → (...), equal to mlx's to float rounding.

    Why not `nn.losses.cross_entropy`: its logsumexp runs MLX's exp, which on x86 CPUs is a
    scalar polynomial calling libm's fmaf per element; over batch x length x vocabulary values
    (twice: forward and the softmax of the backward) it cost more than the head's matmul here.
    2**y via `mx.power` is 2-3x faster per element there, and its vjp reuses its output, so the
    backward needs no second pass of exponentials (3-4x faster value+grad on the CPU; on Metal
    both are fast). The max is a constant shift (it cancels in exact arithmetic), so no
    gradient flows through it."""
    top = mx.stop_gradient(logits.max(axis=-1, keepdims=True))
    total = mx.power(2.0, (logits - top) * LOG2E).sum(axis=-1)
    lse = mx.log(total) + top.squeeze(-1)
    # Integer targets get no gradient (mx.checkpoint in the chunked loss would ask for one).
    picked = mx.take_along_axis(logits, mx.stop_gradient(targets)[..., None], axis=-1)
    return lse - picked.squeeze(-1)


def _ce_sum(model, h, targets, weights):
    logits = head(model, h).astype(mx.float32)  # (..., V)
    return (cross_entropy(logits, targets) * weights).sum()


def loss_sum(model, inputs, targets, weights, segments, *, packed: bool, checkpoint: bool,
             chunk: int, grad: bool = True) -> mx.array:
    """Summed cross-entropy over trained targets (the caller divides by their count).

    grad=False (evaluation) skips the work that only the backward pass needs."""
    mask = attention_mask(segments) if packed else "causal"
    h = hidden_states(model, inputs, mask, checkpoint)  # (B, L, D)
    if not chunk:
        return _ce_sum(model, h, targets, weights)
    B, L, D = h.shape
    h, targets, weights = h.reshape(B * L, D), targets.reshape(-1), weights.reshape(-1)
    if not grad:
        return sum(_ce_sum(model, h[s : s + chunk], targets[s : s + chunk],
                           weights[s : s + chunk]) for s in range(0, B * L, chunk))
    if tree_flatten(_head_module(model).trainable_parameters()):
        return _checkpointed_chunks(model, h, targets, weights, chunk)
    return _fused_chunks(model, chunk)(h, targets, weights)[0]


def _fused_chunks(model, chunk: int):
    """Loss and its gradient wrt the hidden states, computed together chunk by chunk in the
    forward pass, so only (chunk, V) logits ever exist and nothing is recomputed.

    Why not mx.checkpoint per chunk: recomputing the logits in the backward pass costs one more
    (tokens x D x V) matmul and exp pass; with a 32-150k vocabulary that is 10-40% of a LoRA step
    on the CPU. The head is frozen (adapters sit in the decoder layers), so d(loss)/d(hidden)
    is all the backward pass needs from here; a trainable head takes `_checkpointed_chunks`."""

    @mx.custom_function
    def fused(h, targets, weights):
        total, grads = mx.array(0.0, dtype=mx.float32), []
        for s in range(0, h.shape[0], chunk):
            tc, wc = targets[s : s + chunk], weights[s : s + chunk]
            (part,), (dh,) = mx.vjp(lambda hc, tc=tc, wc=wc: _ce_sum(model, hc, tc, wc), [h[s : s + chunk]],
                                    [mx.array(1.0, dtype=mx.float32)])
            total = total + part
            grads.append(dh)
        return total, mx.concatenate(grads, axis=0)

    @fused.vjp
    def fused_vjp(primals, cotangents, outputs):
        h, targets, weights = primals
        return ((cotangents[0] * outputs[1]).astype(h.dtype), mx.zeros_like(targets),
                mx.zeros_like(weights))

    return fused


def _checkpointed_chunks(model, h, targets, weights, chunk: int):
    """Each slice of tokens computes its logits, loss and (in backward) gradient on its own,
    recomputed under mx.checkpoint, so only (chunk, V) logits exist at a time."""
    total = mx.array(0.0, dtype=mx.float32)
    for s in range(0, h.shape[0], chunk):
        # Only the hidden states are differentiated; targets (integer ids) and weights are
        # bound as constants of this chunk's function (mx.checkpoint cannot take int inputs).
        t, w = targets[s : s + chunk], weights[s : s + chunk]
        fn = mx.checkpoint(lambda hc, t=t, w=w: _ce_sum(model, hc, t, w))
        total = total + fn(h[s : s + chunk])
    return total


def adapter_weights(model) -> dict[str, mx.array]:
    return dict(tree_flatten(model.trainable_parameters()))


def count_params(model) -> tuple[int, int]:
    from mlx_lm.utils import get_total_parameters

    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return int(get_total_parameters(model)), int(trainable)


def to_numpy(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)
