"""Bytes of activations MLX keeps for the backward pass, per decoder layer and for the loss, and
the largest short-lived buffers of the backward pass.

Counted tensor by tensor from mlx-lm's Qwen2/Qwen3 layer with LoRA (mlx_lm.tuner.lora) and our
loss, then checked against MLX's own accounting on this machine (strict mode, see
measure.py) with one configuration changed at a time (dimension, rank, targets, dtype, layers):
the saved bytes agree within 0.1%. Notation: T = batch x sequence tokens, dt = bytes of the
compute dtype, F32 = 4. What MLX keeps, and why:

- LoRA's input x: `(x @ A) @ B` with A float32 promotes x to float32, and the gradient of A needs
  that float32 copy (4 bytes per value whatever the dtype); q/k/v share one copy (mx.compile
  merges identical casts). Also x @ A itself (T x r, float32) for the gradient of B.
- attention under a gradient: MLX runs SDPA unfused (mlx PR #2054, "no sdpa in grad"), so the
  softmax probabilities (B x heads x L x L, dt) are kept, with the scaled queries, keys, values,
  the boolean mask (L x L, or B x L x L packed) and RoPE's float32 cos/sin tables.
- the MLP: mlx-lm's compiled swiglu keeps its two inputs and two of its internals (4 x T x I).
- residual stream: each layer's input and the mid-layer residual (for the RMSNorm gradients).
- the lowest adapted layer keeps only what its own adapters need: nothing below it needs a
  gradient (a layer under the first adapted projection computes no backward at all).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..qwen import ATTENTION_PROJECTIONS, MLP_PROJECTIONS
from .shapes import ModelShape

F32 = 4
ATTENTION = frozenset(ATTENTION_PROJECTIONS)
QKV = frozenset(ATTENTION_PROJECTIONS[:3])


@dataclass(frozen=True)
class Work:
    """The part of a run that decides activation memory."""

    batch: int
    seq: int
    dt: int                 # bytes of the compute dtype (2 bf16/fp16, 4 fp32)
    rank: int
    targets: frozenset      # adapted projections
    packed: bool = False
    dora: bool = False
    quantized: bool = False
    attn_block: int = 0     # train.attention: blockwise → its query block; 0 = fused (full L x L)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def score_rows(self) -> int:
        """Query rows whose scores over all keys exist at once (blockwise: one block)."""
        return min(self.attn_block, self.seq) if self.attn_block else self.seq


ATTENTION_BLOCK = 128  # backends/mlx/attention.BLOCK (a test keeps them equal)


MLP = frozenset(MLP_PROJECTIONS)


def layer_parts(s: ModelShape, w: Work, bottom: bool = False) -> tuple[int, int]:
    """(attention part, MLP part): bytes one adapted decoder layer keeps from its forward pass
    for its backward pass. `bottom`: the lowest adapted layer, whose input needs no gradient.
    The MLP part is freed by the layer's MLP backward, before its attention backward runs."""
    T, t, dt = w.tokens, w.targets, w.dt
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    # A LoRA input is kept as float32 (the cast for x @ A); under bfloat16 MLX keeps the
    # bfloat16 RMSNorm outputs as well (measured: +4 bytes x T x hidden per layer).
    lora_in = F32
    attn = len(t & ATTENTION) * T * w.rank * F32                 # x @ A per adapter
    mlp = len(t & MLP) * T * w.rank * F32
    if dt != F32:
        attn += T * s.hidden * F32
    needs_attention = not bottom or bool(t & QKV)
    if not bottom:
        attn += T * s.hidden * dt                                # layer input (RMSNorm grad)
    if t & QKV:
        attn += T * s.hidden * lora_in                           # LoRA input of q/k/v
    if needs_attention:
        attn += T * (q + 2 * kv) * dt                            # scaled q, k, v
        # blockwise: its output and logsumexp. Not calibrated: whole_run's tiny epoch (4 x 512)
        # measured 0.112 GiB against 93.2 MiB planned (-18%; the fused path: -29%).
        if w.attn_block:
            attn += T * q * dt + w.batch * s.heads * w.seq * F32
        else:
            attn += w.batch * s.heads * w.seq * w.seq * dt       # softmax probabilities
            attn += (w.batch if w.packed else 1) * w.seq * w.seq  # boolean mask
        attn += 2 * w.seq * s.head_dim * F32                     # RoPE cos/sin
        if s.qk_norm:                                            # q/k RMSNorm inputs
            attn += T * (q + kv) * dt * (1 if dt == F32 else 2)
    if "o_proj" in t:
        attn += T * q * lora_in                                  # LoRA input of o_proj
    if not bottom or t & ATTENTION:
        attn += T * s.hidden * dt                                # mid-layer residual
    if t & {"gate_proj", "up_proj"}:
        mlp += T * s.hidden * lora_in                            # LoRA input of gate/up
    mlp += swiglu_kept(t, bottom) * T * s.intermediate * dt      # swiglu inputs + internals
    if "down_proj" in t:
        mlp += T * s.intermediate * lora_in                      # LoRA input of down_proj
    if w.dora:
        attn, mlp = attn + _dora(s, w, t & ATTENTION), mlp + _dora(s, w, t & MLP)
    return attn, mlp


def swiglu_kept(targets, bottom: bool) -> int:
    """How many T x I buffers of the swiglu a layer keeps: its two inputs and two internals,
    unless it is the lowest adapted layer, where only the adapters' own gradients are needed:
    up_proj's needs silu(gate) alone, down_proj's only its input (counted apart); gate_proj's,
    or any attention adapter's, the full swiglu (measured on the planner's in-sample draws: a bottom layer adapting up_proj
    alone was predicted 55% over with 4)."""
    if not bottom or "gate_proj" in targets or targets & ATTENTION:
        return 4  # (attention adapters below the MLP need the gradient through all of it)
    return 1 if "up_proj" in targets else 0


def swiglu_forward_extra(s: ModelShape, w: Work, bottom: bool) -> int:
    """The swiglu buffers the forward pass computes but a layer does not keep: all four are
    alive while it runs."""
    return (4 - swiglu_kept(w.targets, bottom)) * w.tokens * s.intermediate * w.dt


def _dora(s: ModelShape, w: Work, targets) -> int:
    """mlx-lm's DoRA (tuner/dora.py) rescales each output by m / ||W + BA||: the unscaled output
    is kept for m's gradient, and a quantized base is dequantized per call and kept (the input's
    gradient needs W)."""
    total = 0
    for p in targets:
        i, o = s.projection(p)
        total += w.tokens * o * w.dt + (o * i * w.dt if w.quantized else 0)
    return total


def layer_saved(s: ModelShape, w: Work, bottom: bool = False) -> int:
    return sum(layer_parts(s, w, bottom))


def loss_saved(s: ModelShape, w: Work, chunk: int) -> int:
    """Bytes the loss keeps from the forward pass for the backward pass. Plain: the float32
    exponentials of the logits (B x L x V; the cross-entropy's gradient reuses them, see
    chunked_loss.cross_entropy). Chunked: each chunk's loss and its gradient w.r.t. the hidden
    states are computed together in the forward pass (backends/mlx/chunked_loss.py), so only that
    (tokens x D) gradient, in the compute dtype, is kept."""
    if not chunk:
        return w.tokens * s.vocab * F32
    return w.tokens * s.hidden * w.dt


def _logit_bytes(w: Work) -> int:
    """Bytes per (token, vocabulary entry) of the logits before the loss: the head's output in
    the compute dtype and its float32 copy (one buffer when the compute dtype is float32)."""
    return F32 + (w.dt if w.dt != F32 else 0)


def loss_forward_transient(s: ModelShape, w: Work, chunk: int) -> int:
    """Extra bytes, on top of what the loss keeps, at its fullest moment in the forward pass.
    Plain: the logits (compute dtype and float32) next to the exponentials. Chunked: one chunk's
    logits, exponentials and two float32 gradient buffers (the softmax part and the scattered
    one-hot), plus the normed hidden states the chunks read. Measured on MLX 0.32 in strict mode
    (T=512-1024, D=256-512, V=1-4k, chunks of 64-256 rows): within ~0.5 x T x D x dt."""
    if not chunk:
        return w.tokens * s.vocab * _logit_bytes(w)
    rows = min(chunk, w.tokens)
    # In float32 two more float32 chunk buffers are alive (the cast to float32 is a no-op, so
    # the head's output stays referenced by the gradient's gather): measured on the planner's
    # in-sample draws (benchmarks/planner_heldout.py, 64-128-row chunks, V 4-32k), the forward
    # was 2-20% under with the bfloat16 count; 5 buffers put it within 3%.
    per_entry = _logit_bytes(w) + 2 * F32 if w.dt != F32 else 5 * F32
    return rows * s.vocab * per_entry + w.tokens * s.hidden * w.dt


def loss_backward_transient(s: ModelShape, w: Work, chunk: int) -> int:
    """Extra bytes while the loss's gradient is applied in the backward pass. Plain: the float32
    gradient of the logits (and its cast to the compute dtype, or a float32 T x D product).
    Chunked: the kept gradient scaled by the loss's cotangent (T x D)."""
    if not chunk:
        extra = w.tokens * s.vocab * w.dt if w.dt != F32 else w.tokens * s.hidden * F32
        return w.tokens * s.vocab * F32 + extra
    return w.tokens * s.hidden * w.dt


def loss_peak(s: ModelShape, w: Work, chunk: int) -> int:
    """The loss's bytes at its fullest moment (forward or backward), what it keeps included."""
    return loss_saved(s, w, chunk) + max(loss_forward_transient(s, w, chunk),
                                         loss_backward_transient(s, w, chunk))


def mlp_backward_transient(s: ModelShape, w: Work, checkpoint: bool = False,
                           bottom: bool = False) -> int:
    """Extra bytes while a layer's MLP backward runs: float32 gradient buffers of T x I (two, or
    three when the layer was just recomputed: one of its forward's T x I buffers is still about;
    measured on the small benchmark model, 4 over-predicted its peak by 5%), and the residual
    stream's gradient. In float32 without checkpointing one buffer fewer: MLX donates a float32
    input's buffer to an op's output of the same dtype (measured on the planner's in-sample
    draws, benchmarks/planner_heldout.py: fp32 MLP-bound configurations were 5-12% over with
    the bf16 count; recomputed layers keep the count). One buffer too in a lowest layer that
    keeps less than the full swiglu (no gate_proj adapter: only up_proj's gradient is formed)."""
    T = w.tokens
    n = 3 if checkpoint else 2 if w.dt != F32 and swiglu_kept(w.targets, bottom) == 4 else 1
    size = F32 if w.targets & MLP else w.dt
    return n * T * s.intermediate * size + T * s.hidden * F32


def attention_backward_transient(s: ModelShape, w: Work, checkpoint: bool = False) -> int:
    """Extra bytes while a layer's attention backward runs: the gradients of the probabilities
    and of the scores (B x heads x L x L each, float32; in float32 the scores' gradient takes
    the probabilities' gradient's buffer, donated, unless the layer was just recomputed) and
    three T x hidden float32 buffers (the output's gradient, the query's, and their sum)."""
    squares = 1 if w.dt == F32 and not checkpoint else 2
    if w.attn_block:  # a block's scores, probabilities and their gradient (attention.py)
        squares = 3
    return (squares * w.batch * s.heads * w.score_rows * w.seq * F32
            + 3 * w.tokens * s.hidden * F32)


def attention_forward_peak(s: ModelShape, w: Work) -> int:
    """Bytes alive at a layer's softmax in the forward pass when the layer keeps nothing
    (checkpointing): its normed input, the scaled queries, keys and values, the mask, RoPE's
    tables, and the scores next to the probabilities (B x heads x L x L each). Checked on the
    in-sample draws (benchmarks/planner_heldout.py): -1.5% and +11% on the forward phase of the
    two checkpointed float32 ones, where the layer's kept activations gave -24% and +5%."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    T = w.tokens
    return (T * s.hidden * w.dt + T * (q + 2 * kv) * w.dt
            + 2 * w.batch * s.heads * w.score_rows * w.seq * w.dt
            + (0 if w.attn_block else (w.batch if w.packed else 1) * w.seq * w.seq)
            + 2 * w.seq * s.head_dim * F32)


def dora_weights_kept(s: ModelShape, w: Work) -> int:
    """Bytes of the dequantized base weights one layer's DoRA adapters keep (see _dora): a
    function of the weights alone, so checkpointing the layer does not drop them (measured on
    the planner's in-sample draws: a checkpointed 4-bit DoRA run was 41% over the plan that
    dropped them)."""
    if not (w.dora and w.quantized):
        return 0
    return sum(s.projection(p)[0] * s.projection(p)[1] * w.dt for p in w.targets)


def dora_forward_transient(s: ModelShape, w: Work) -> int:
    """DoRA's forward builds W + BA in float32 for each adapted projection of a layer to take
    its row norms; the layer's norms are computed together (they do not depend on the input)."""
    if not w.dora:
        return 0
    return sum(s.projection(p)[0] * s.projection(p)[1] * F32 for p in w.targets)
