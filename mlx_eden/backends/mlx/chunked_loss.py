"""Cross-entropy over the vocabulary a slice of tokens at a time, so the (tokens, V) float32
logits never exist for the whole batch (B x L x V x 4 bytes is ~1.2 GB per 2048 tokens at
Qwen's 152k vocabulary, and the backward pass needs about three such buffers).

Why not just loop over `mx.checkpoint(piece)` per slice (what this replaced): measured on MLX
0.32, it saves nothing in the backward pass. The slices are independent branches of one graph
and MLX orders a graph breadth-first (MLX_BFS_MAX_WIDTH=20), so it runs every slice's head
matmul before any slice's softmax: all slices' logits are alive at once. Here each slice's
input depends (`mx.depends`) on the previous slice's result, in the forward and in the custom
backward, which forces one slice after another; the backward recomputes a slice's logits
instead of keeping them (like a checkpoint).

Everything the custom function reads is an explicit argument (hidden states, targets, weights
and the head's arrays): under `mx.compile` a captured array is a placeholder that cannot be
evaluated. The run-ahead of MLX's scheduler (it allocates up to ~50 ops ahead of the compute)
is bounded by the memory limit, which the trainer sets from the memory budget (memory.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn

HeadFn = Callable[[mx.array, Sequence[mx.array]], mx.array]


def head_parts(module: nn.Module) -> tuple[list[mx.array], HeadFn]:
    """The output projection as plain arrays and a function of them: `fn(x, arrays)` equals
    `module(x)` for an lm_head, or `module.as_linear(x)` for a tied embedding."""
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
        kw = {"transpose": True, "group_size": module.group_size, "bits": module.bits,
              "mode": module.mode}
        arrays = [module["weight"], module["scales"]]
        has_biases = module.get("biases") is not None
        if has_biases:
            arrays.append(module["biases"])

        def quantized(x, a):
            return mx.quantized_matmul(x, a[0], scales=a[1], biases=a[2] if has_biases else None,
                                       **kw)

        return arrays, quantized
    return [module["weight"]], lambda x, a: x @ a[0].T


def chunked_ce_sum(head: HeadFn, head_arrays: Sequence[mx.array], h: mx.array,
                   targets: mx.array, weights: mx.array, chunk: int) -> mx.array:
    """sum(cross_entropy(head(h), targets) * weights) for h (N, D) and targets/weights (N,),
    `chunk` rows at a time. Differentiable w.r.t. h only (the head is frozen)."""
    bounds = [(s, min(s + chunk, h.shape[0])) for s in range(0, h.shape[0], chunk)]

    def piece(x, t, w, arrays):
        logits = head(x, arrays).astype(mx.float32)  # (rows, V)
        return (nn.losses.cross_entropy(logits, t) * w).sum()

    def rows(a, s, e, after):
        return a[s:e] if after is None else mx.depends(a[s:e], after)

    @mx.custom_function
    def loss(x, t, w, *arrays):
        total = prev = None
        for s, e in bounds:
            part = piece(rows(x, s, e, prev), t[s:e], w[s:e], arrays)
            total = part if total is None else total + part
            prev = part
        return total

    @loss.vjp
    def loss_vjp(primals, cotangent, output):
        x, t, w, *arrays = primals
        grads, prev = [], None
        for s, e in bounds:
            ts, ws = t[s:e], w[s:e]
            _, (g,) = mx.vjp(lambda xs, ts=ts, ws=ws: piece(xs, ts, ws, arrays),
                             [rows(x, s, e, prev)], [cotangent])
            grads.append(g)  # (rows, D)
            prev = g
        # Gradients of targets, weights and the frozen head are never used, so never computed.
        rest = [mx.zeros_like(a) for a in (t, w, *arrays)]
        return (mx.concatenate(grads, axis=0), *rest)

    return loss(h, targets, weights, *head_arrays)
