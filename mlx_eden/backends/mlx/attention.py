"""Blockwise attention that keeps no (B, H, L, L) array for backward.

Why: on MLX's CPU backend `mx.fast.scaled_dot_product_attention` falls back to unfused ops, so a
training step keeps the float32 scores and probabilities of every layer (B·H·L² each: 16.8 MB
per layer at batch 4 × 512 with 4 heads) until backward; on the tiny model they were most of the
peak. Here (flash-attention style) the forward runs in blocks of queries and keeps only its
output and each row's logsumexp; backward recomputes each block's probabilities from Q, K, V.
Each block reads only the keys up to its last query (causal), and its input depends
(`mx.depends`) on the previous block's result: MLX orders a graph breadth-first, so without it
every block's scores would be alive together.

Speed (the tiny model's steps are attention-bound on the CPU): the scores are kept in base-2
units (q carries scale·log2 e) so each probability is one `mx.power(2, ·)` (~3x MLX's CPU exp),
and the mask is an additive -inf bias built at 1/H of the scores' size (a broadcast add instead
of a `where` over the scores, ~10x faster; -inf rather than a large finite negative because
2^(-1e9) takes a slow underflow path, 4x slower than 2^(-inf)). Measured: one layer's attention
forward and backward at 4 x 512 (4 heads, 2 KV heads, head size 64) went from 115-130 to 74-90
ms of CPU time (same process, alternated, busy 2-core box); query blocks of 64 to 192 cost the
same within noise (min of 15: 74-80 ms at 512 queries, 25-27 at 272), 256 was slower.
BLOCK = 128 is also the planner's.

The attention is reached through mlx-lm's own layers: `installed` swaps the module-level
`scaled_dot_product_attention` their Attention calls, and a layer called with a (B, L) integer
mask (segment ids: which sample of a packed row each position belongs to) gets the blockwise
path. Every other call (a cache, a 4-D mask, "causal", sinks) goes to mlx-lm's function as before.
"""

from __future__ import annotations

import contextlib
import sys

import mlx.core as mx

from .exp2 import LN2, LOG2E, exp2
from .swiglu import swiglu as fast_swiglu

BLOCK = 128  # queries per block; tiny model, B=4 x 512: whole-step peak 0.120 GB (64: 0.118, fused 0.181)
_NEG = float("-inf")  # a masked score; every row keeps its diagonal, so none is all masked


def _scores(q, k, seg, i0, i1, prev):
    """Masked scores of queries i0:i1 against keys 0:i1: (B, Hk, (i1-i0)·rep, i1)."""
    rep = q.shape[2] // k.shape[2]
    qb = q[:, :, i0 * rep:i1 * rep]
    if prev is not None:
        qb = mx.depends(qb, prev)  # one block at a time (see the module docstring)
    s = qb @ k[:, :, :i1].swapaxes(-1, -2)
    # The mask as an additive bias built at (B, 1, Lq, 1, Lk), 1/H of the scores, then added:
    # MLX's CPU `where` runs ~240 M elements/s against ~2,500 for a broadcast add (measured at
    # (4, 2, 1024, 512)), so a where over the scores cost more than their matmul.
    keep = mx.arange(i0, i1)[:, None] >= mx.arange(i1)[None, :]
    keep = (keep & (seg[:, i0:i1, None] == seg[:, None, :i1]))[:, None, :, None]
    bias = mx.where(keep, mx.array(0.0, s.dtype), mx.array(_NEG, s.dtype))
    B, Hk, _, _ = s.shape
    return (s.reshape(B, Hk, i1 - i0, rep, i1) + bias).reshape(s.shape)


def _blocks(n: int, block: int):
    return [(i0, min(n, i0 + block)) for i0 in range(0, n, block)]


def _forward(q, k, v, seg):
    """q (B, Hk, L·rep, D), already scaled by scale·log2(e) (scores in base-2 units): the rep query heads that share a K/V head, interleaved by position;
    k and v (B, Hk, L, D) → (output like q, base-2 logsumexp (B, Hk, L·rep, 1))."""
    outs, lses = [], []
    for i0, i1 in _blocks(k.shape[2], BLOCK):
        s = _scores(q, k, seg, i0, i1, outs[-1] if outs else None)
        # One power of 2 per score (mx.logsumexp then 2^(s - lse) would take two); see exp2.py
        top = mx.max(s, axis=-1, keepdims=True)
        e = exp2(s - top)
        total = mx.sum(e, axis=-1, keepdims=True)
        outs.append((e @ v[:, :, :i1]) / total)
        lses.append(top + mx.log2(total))
    return mx.concatenate(outs, axis=2), mx.concatenate(lses, axis=2)


def _backward(primals, cotangents, outputs, wait_dob: bool = False, wait_first: bool = True):
    """The gradients of `_forward` with respect to q, k and v, one query block at a time.

    `wait_dob=True` makes each block's output-gradient slice wait for the previous block too
    (dO·Vᵀ reads nothing of the chain, so MLX may compute every block's square early). Measured
    in round 8 and not shipped (benchmarks/blockwise_wait_ab.py, results/blockwise_wait_ab.json):
    gradients bit-identical and the step neither faster nor slower (B/A median 0.995, 1.002,
    0.998 over 60 alternated pairs each: tiny, tiny with KV heads = heads, 40M; quartiles within
    ±2%), but the strict whole-step peak moved both ways on the 8 new in-sample shapes
    (benchmarks/planner_heldout.py in_sample_round8_blockwise; the same in two runs): -3.0% and
    -2.2% on the float32 non-checkpointed draws with KV heads = heads, +4.2% on the checkpointed
    one, +3.0-3.5% on the bfloat16 one; the others within 0.2% or moving ±2% between runs.
    `wait_first=False` is the formula before round 13 (the first block waits for nothing), kept
    so benchmarks/first_wait_ab.py can time both in one process."""
    q, k, v, seg = primals
    do, (o, lse) = cotangents[0], outputs
    L, rep = k.shape[2], q.shape[2] // k.shape[2]
    delta = mx.sum(do * o, axis=-1, keepdims=True)  # rowsum(dO ∘ O) = rowsum(P ∘ dP)
    dq, dk, dv = [], mx.zeros(k.shape, k.dtype), mx.zeros(v.shape, v.dtype)
    for i0, i1 in _blocks(L, BLOCK):
        r0, r1 = i0 * rep, i1 * rep
        # Wait for the previous block's dq too: only the final concatenation reads it, so MLX
        # would run every dq matmul last, keeping every block's ds alive until then. Measured
        # (mx.vjp of blockwise_attention, strict mode, 1 x 2,048 tokens, 8 heads, fp32): peak
        # 83.6 -> 27.0 MiB (3.4 last-block squares at any length); gradients bit-identical; a
        # tiny-model step at 4 x 512 min 228 vs 231 ms (25 alternated rounds, busy 2-core box).
        # The first block waits for delta (the backward's own array): the micro-step is
        # mx.compile'd, and compile's common-subexpression pass merged this block's recomputed
        # scores, identical to the forward's without a wait, with the forward's, keeping one
        # B x H x b x b square per layer from the forward to its backward. Measured (strict,
        # 2 x 128 packed, 3 layers, benchmarks/planner_heldout.py in_sample_round13_planner14b):
        # whole-step peak float32 20.92 -> 18.68 MiB, bf16 13.21 -> 12.27 (waiting for the
        # zeros dk, dv instead raised in-sample-08-blockwise's forward 62.2 -> 64.8 MiB).
        prev = [dk, dv, dq[-1]] if i0 else ([delta] if wait_first else None)
        s = _scores(q, k, seg, i0, i1, prev)
        p = exp2(s - lse[:, :, r0:r1])
        dob = do[:, :, r0:r1]
        if prev is not None and wait_dob:
            dob = mx.depends(dob, prev)  # off: see the docstring
        ds = p * (dob @ v[:, :, :i1].swapaxes(-1, -2) - delta[:, :, r0:r1])  # d/d(natural score)
        dq.append(ds @ k[:, :, :i1])
        pad = [(0, 0), (0, 0), (0, L - i1), (0, 0)]
        dv = dv + mx.pad(p.swapaxes(-1, -2) @ dob, pad)
        dk = dk + mx.pad(ds.swapaxes(-1, -2) @ q[:, :, r0:r1], pad)
    # The scores are in base-2 units (q carries log2(e)): d(natural)/d(base 2) = ln 2, applied
    # to the (B, Hk, L, D) results rather than to every score.
    return mx.concatenate(dq, axis=2) * LN2, dk * LN2, dv, mx.zeros_like(seg)


_attend = mx.custom_function(_forward)


@_attend.vjp
def _attend_vjp(primals, cotangents, outputs):
    return _backward(primals, cotangents, outputs)


def blockwise_attention(q, k, v, scale: float, segments: mx.array) -> mx.array:
    """Causal attention within segments. q (B, H, L, D), k/v (B, Hk, L, D), segments (B, L)."""
    B, H, L, D = q.shape
    Hk = k.shape[1]
    rows = q.reshape(B, Hk, H // Hk, L, D).transpose(0, 1, 3, 2, 4).reshape(B, Hk, -1, D)
    out, _ = _attend(rows * (scale * LOG2E), k, v, segments)
    return out.reshape(B, Hk, L, H // Hk, D).transpose(0, 1, 3, 2, 4).reshape(B, H, L, D)


def _dispatch(original):
    def sdpa(queries, keys, values, cache, scale, mask, sinks=None):
        if (cache is None and sinks is None and isinstance(mask, mx.array) and mask.ndim == 2):
            return blockwise_attention(queries, keys, values, scale, mask)
        return original(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)
    sdpa.original = original
    return sdpa


def _mlx_lm_swiglu():
    from mlx_lm.models import activations

    return activations.swiglu


@contextlib.contextmanager
def installed(layer):
    """While inside, `layer`'s attention takes a (B, L) segment-id mask (blockwise path), and
    its MLP's mlx-lm `swiglu` is ours (swiglu.py). Both are swapped at the module level of the
    layer's mlx-lm model file, where its Attention and MLP look them up."""
    swaps = []  # (module, name, ours): only what is there and not swapped yet
    attention = sys.modules[type(layer.self_attn).__module__]
    original = getattr(attention, "scaled_dot_product_attention", None)
    if original is not None and not hasattr(original, "original"):
        swaps.append((attention, "scaled_dot_product_attention", _dispatch(original)))
    mlp = sys.modules[type(getattr(layer, "mlp", layer)).__module__]
    if getattr(mlp, "swiglu", None) is _mlx_lm_swiglu():
        swaps.append((mlp, "swiglu", fast_swiglu))
    before = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, ours in swaps:
        setattr(module, name, ours)
    try:
        yield
    finally:
        for module, name, theirs in before:
            setattr(module, name, theirs)
