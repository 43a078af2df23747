"""Trainable rows for new tokens (recipe `tokens.add`) on MLX: the embedding (and an untied
lm_head) are wrapped so ids first..first+n-1 read, and their logits come from, a small float32
(n, D) tensor; the base matrices stay frozen (and quantized, for QLoRA). A tied model has one
tensor for both directions, as its base does."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ...tokens import (
    TOKEN_ROWS,
    TOKENS_FILE,
    TokenPlan,
    check_same_tokens,
    read_tokens,
    tokens_info,
)
from .chunked_loss import head_parts


def splice(logits: mx.array, x: mx.array, rows: mx.array, first: int) -> mx.array:
    """(..., V) logits with columns first..first+n-1 replaced by x @ rows.T."""
    new = (x.astype(mx.float32) @ rows.T).astype(logits.dtype)  # (..., n)
    return mx.concatenate([logits[..., :first], new, logits[..., first + rows.shape[0]:]], -1)


class RowsEmbedding(nn.Module):
    """An embedding whose rows first.. are `rows` (trainable); as_linear splices their logits."""

    def __init__(self, base: nn.Module, rows: mx.array, first: int):
        super().__init__()
        self.base, self.rows, self._first = base, rows, first

    def __call__(self, ids: mx.array) -> mx.array:
        out = self.base(ids)  # (B, L, D)
        n = self.rows.shape[0]
        local = ids - self._first
        hit = (local >= 0) & (local < n)
        new = self.rows[mx.clip(local, 0, n - 1)].astype(out.dtype)
        return mx.where(hit[..., None], new, out)

    def as_linear(self, x: mx.array) -> mx.array:
        return splice(self.base.as_linear(x), x, self.rows, self._first)


class RowsHead(nn.Module):
    """An untied lm_head whose output columns first.. come from `rows` (trainable)."""

    def __init__(self, base: nn.Module, rows: mx.array, first: int):
        super().__init__()
        self.base, self.rows, self._first = base, rows, first

    def __call__(self, x: mx.array) -> mx.array:
        return splice(self.base(x), x, self.rows, self._first)


def rows_head_parts(module):
    """head_parts for a wrapped head: the base's arrays plus the rows (last)."""
    arrays, fn = head_parts(module.base)
    first = module._first
    def head(x, a):
        # The base head is frozen: with a trainable head the chunked loss differentiates every
        # array it is given, and MLX has no gradient for quantized weights (QLoRA) at all.
        return splice(fn(x, [mx.stop_gradient(b) for b in a[:-1]]), x, a[-1], first)

    return [*arrays, module.rows], head


def _dense(module: nn.Module) -> mx.array:
    """The float32 weight of an embedding or linear (de-quantized when quantized)."""
    if isinstance(module, (nn.QuantizedEmbedding, nn.QuantizedLinear)):
        return mx.dequantize(module["weight"], module["scales"], module.get("biases"),
                             module.group_size, module.bits, mode=module.mode).astype(mx.float32)
    return module.weight.astype(mx.float32)


def _init_rows(module: nn.Module, plan: TokenPlan) -> mx.array:
    w = _dense(module)  # (V, D)
    if plan.init_ids:
        start = w[mx.array(plan.init_ids)].mean(axis=0)
    else:  # mean of the rows the tokenizer uses (spare rows are never trained)
        start = w[: plan.first_id].mean(axis=0)
    return mx.broadcast_to(start, (len(plan.tokens), w.shape[1])) + 0.0


def add_token_rows(model, plan: TokenPlan | None) -> None:
    """Wrap embedding (and untied head) with trainable rows for the plan's tokens."""
    if plan is None:
        return
    inner = model.model
    inner.embed_tokens = RowsEmbedding(inner.embed_tokens, _init_rows(inner.embed_tokens, plan),
                                       plan.first_id)
    if not _tied(model):
        model.lm_head = RowsHead(model.lm_head, _init_rows(model.lm_head, plan), plan.first_id)
    mx.eval(model.trainable_parameters())


def _tied(model) -> bool:
    return getattr(model.args, "tie_word_embeddings", False) or not hasattr(model, "lm_head")


def is_token_key(name: str) -> bool:
    return name.endswith(".rows")


def token_arrays(model) -> dict[str, mx.array]:
    out = {"embed": model.model.embed_tokens.rows}
    if isinstance(getattr(model, "lm_head", None), RowsHead):
        out["head"] = model.lm_head.rows
    return out


def save_token_rows(model, plan: TokenPlan | None, directory: Path) -> None:
    if plan is None:
        return
    mx.save_safetensors(str(directory / TOKEN_ROWS), token_arrays(model))
    (directory / TOKENS_FILE).write_text(json.dumps(tokens_info(plan, _tied(model)), indent=2))


def load_token_rows(model, plan: TokenPlan | None, directory: Path) -> None:
    """Set the rows from an adapter folder (refusing other tokens than the recipe's)."""
    check_same_tokens(read_tokens(directory), plan, str(directory))
    if plan is None:
        return
    saved = mx.load(str(directory / TOKEN_ROWS))
    model.model.embed_tokens.rows = saved["embed"].astype(mx.float32)
    if isinstance(getattr(model, "lm_head", None), RowsHead):
        model.lm_head.rows = saved.get("head", saved["embed"]).astype(mx.float32)
    mx.eval(model.trainable_parameters())


def write_rows(model, directory: Path) -> None:
    """Fuse: write an adapter's rows into the (de-quantized) embedding and head weights."""
    info = read_tokens(directory)
    if info is None:
        return
    saved = mx.load(str(directory / TOKEN_ROWS))
    first = info["first_id"]
    emb = model.model.embed_tokens
    emb.weight = _put(emb.weight, saved["embed"], first)
    if hasattr(model, "lm_head") and not _tied(model):
        model.lm_head.weight = _put(model.lm_head.weight, saved.get("head", saved["embed"]),
                                    first)


def _put(weight: mx.array, rows: mx.array, first: int) -> mx.array:
    n = rows.shape[0]
    return mx.concatenate([weight[:first], rows.astype(weight.dtype), weight[first + n:]], 0)


def attach_rows(model, directory) -> None:
    """Unfused inference (export --verify's reference): wrap the embedding and head with the
    adapter folder's rows, when it has any."""
    info = read_tokens(directory) if directory is not None else None
    if info is None:
        return
    saved = mx.load(str(Path(directory) / TOKEN_ROWS))
    first = info["first_id"]
    inner = model.model
    inner.embed_tokens = RowsEmbedding(inner.embed_tokens, saved["embed"], first)
    if not _tied(model):
        model.lm_head = RowsHead(model.lm_head, saved.get("head", saved["embed"]), first)


def unwrap_rows(model) -> None:
    """Put the plain embedding and head back (fuse writes the rows into their weights)."""
    inner = model.model
    if isinstance(inner.embed_tokens, RowsEmbedding):
        inner.embed_tokens = inner.embed_tokens.base
    if isinstance(getattr(model, "lm_head", None), RowsHead):
        model.lm_head = model.lm_head.base
