"""Evaluation on MLX: greedy batched generation (mlx-lm's BatchGenerator: left padding, a
batched KV cache, continuous batching) and per-row log-likelihoods of the trained tokens."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from . import model as M


def generate(model, prompts: list[list[int]], max_new_tokens: int,
             stop: set[int]) -> list[list[int]]:
    """Greedy continuations (mlx-lm's default sampler is argmax), stop token excluded."""
    from mlx_lm.generate import BatchGenerator

    n = len(prompts)
    gen = BatchGenerator(model, max_tokens=max_new_tokens,
                         stop_tokens=[[t] for t in sorted(stop)] or None,
                         completion_batch_size=n, prefill_batch_size=n)
    try:
        uids = gen.insert([list(p) for p in prompts])
        out: dict[int, list[int]] = {u: [] for u in uids}
        while responses := gen.next_generated():
            for r in responses:
                if r.finish_reason != "stop":
                    out[r.uid].append(int(r.token))
    finally:
        gen.close()
    return [out[u] for u in uids]


def sequence_logprobs(model, inputs, targets, weights, segments,
                      packed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log p(target) over weighted positions, their count) per row, float64/int64 (B,).

    The full (B, L, V) logits exist for one batch: choice suites batch a few short rows, and
    the caller picks the batch size."""
    mask = M.layer_mask(segments, packed, blockwise=False, dtype=M.compute_dtype(model))
    h = M.hidden_states(model, inputs, mask, checkpoint=False)  # (B, L, D)
    logits = M.head(model, h).astype(mx.float32)  # (B, L, V)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    picked = mx.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B, L)
    sums, counts = (picked * weights).sum(axis=1), weights.sum(axis=1)
    mx.eval(sums, counts)
    return np.array(sums).astype(np.float64), np.array(counts).astype(np.int64)
