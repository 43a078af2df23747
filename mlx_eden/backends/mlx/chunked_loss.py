"""The cross-entropy, and the same loss over the vocabulary a slice of tokens at a time, so the
(tokens, V) float32 logits never exist for the whole batch (B x L x V x 4 bytes is ~1.2 GB per
2048 tokens at Qwen's 152k vocabulary, and the backward pass needs about three such buffers).

Two things measured on MLX 0.32 shape `chunked_ce_sum`:
- Slices must run one after another. Independent slices are independent branches of one graph,
  and MLX orders a graph breadth-first (MLX_BFS_MAX_WIDTH=20), so a plain loop (even of
  `mx.checkpoint(piece)`) runs every slice's head matmul before any slice's softmax: all the
  slices' logits are alive at once and nothing is saved. Each slice's input here depends
  (`mx.depends`) on the previous slice's result.
- Nothing should be computed twice. The head is frozen (adapters sit in the decoder layers), so
  the backward pass needs only d(loss)/d(hidden); each slice computes its loss and that gradient
  together in the forward pass and drops its logits. Recomputing the logits in the backward
  instead would cost one more (tokens x D x V) matmul and exponential pass: 10-40% of a LoRA
  step on the CPU with a 32-150k vocabulary. What is kept is the (tokens, D) gradient, the size
  of the hidden states.

Everything the custom function reads is an explicit argument (hidden states, targets, weights
and the head's arrays): under `mx.compile` a captured array is a placeholder that cannot be
evaluated. A trainable head (not something the recipes do) takes `checkpointed_ce_sum`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn

from .exp2 import LOG2E, exp2

HeadFn = Callable[[mx.array, Sequence[mx.array]], mx.array]


def cross_entropy(logits: mx.array, targets: mx.array, pick_first: bool = False,
                  hold: mx.array | None = None) -> mx.array:
    """Per-token cross-entropy, (..., V) logits → (...), equal to mlx's to float rounding.

    Why not `nn.losses.cross_entropy`: its logsumexp runs MLX's exp, which on x86 CPUs is a
    scalar polynomial calling libm's fmaf per element; over batch x length x vocabulary values
    (twice: forward and the softmax of the backward) it cost more than the head's matmul here.
    2**y via `mx.power` is 2-3x faster per element there, and its vjp reuses its output, so the
    backward needs no second pass of exponentials (3-4x faster value+grad on the CPU; on Metal
    both are fast). The max is a constant shift (it cancels in exact arithmetic), so no
    gradient flows through it.

    `pick_first` (the chunked loss): the target logits are picked before the exponentials
    start (mx.depends), so the exponentials always take the float32 logits' buffer (donated).
    Without the barrier, whether the pick's task still held it was thread timing: compiled,
    1 x 256 tokens x 4,096 float32 logits peaked at 8 or 12 bytes per logit in 24 strict-mode
    repeats (8 of 24 at 12), and 4 x 128-row chunks at 16 or 20; with it, 8 and 16 in 48 of
    48, the same loss and gradient bit for bit and the same time (2.73 vs 2.74 s min over 8,
    V 32,768). The unchunked bf16 loss takes `hold` instead (ce_sum): there the pick-first
    barrier left three outcomes, not one (6, 8 or 10 bytes per logit in the forward, strict,
    T 640, V 4,096), as the exponentials took the float32 logits' buffer or not and the bf16
    head output was freed or not. `hold` (an array kept alive until the exponentials exist)
    changes no value: mx.depends on a stop_gradient copy."""
    top = mx.stop_gradient(logits.max(axis=-1, keepdims=True))
    # Integer targets get no gradient (mx.checkpoint in the chunked loss would ask for one).
    picked = mx.take_along_axis(logits, mx.stop_gradient(targets)[..., None], axis=-1)
    shifted = (mx.depends(logits, picked) if pick_first else logits) - top
    exps = exp2(shifted * LOG2E)
    if hold is not None:  # kept alive until the exponentials exist (ce_sum's docstring)
        exps = mx.depends(exps, mx.stop_gradient(hold))
    total = exps.sum(axis=-1)
    lse = mx.log(total) + top.squeeze(-1)
    return lse - picked.squeeze(-1)


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


def ce_sum(head: HeadFn, x, t, w, arrays, pick_first: bool = False,
           hold_head: bool = False) -> mx.array:
    """sum(cross_entropy(head(x), t) * w) in one piece: the unchunked loss.

    `hold_head` (the unchunked training loss): a head output in another dtype than float32
    (bfloat16) is kept until the exponentials exist, so the forward holds it beside the float32
    logits and exponentials (10 bytes per logit) in every run. Without it, whether the cast's
    task had released it when the exponentials were allocated was thread timing (MLX frees a
    buffer on its CPU stream thread; strict mode waits only for every 10th dispatch,
    mlx/backend/cpu/encoder.h): 8 or 10 bytes, 31 and 29 of 60 strict runs on three shapes
    (T 256-640, V 4,096-32,768; benchmarks/loss_hold_ab.py --race); whole training steps of
    one shape went both ways from step to step (heldout8-10's and heldout9-04's forwards were
    21% and 24% under the plan in such leaner runs; a tied 1 x 512, V 8,192 was lean in 8
    of 8). With it: 10 in 60 of 60, and the fuller figure in 48 of 48 whole-step forwards of
    four shapes (loss_hold_ab.py --whole; in_sample_round9_planner10a's 1 x 640 and 2 x 320,
    that tied one, a tied 1 x 256 at V 32,768). Freeing it instead cannot be ordered: nothing
    in the graph waits for that release. No slower (paired step-time ratios 0.999-1.010,
    benchmarks/results/loss_hold_ab.json). The same loss and gradient bit for bit
    (tests/test_loss_hold.py); float32 is untouched (the head's output is the logits). The
    backward held it in every run already, so the step's peak is unchanged."""
    out = head(x, arrays)
    logits = out.astype(mx.float32)  # (..., V)
    hold = out if hold_head and out.dtype != mx.float32 else None
    return (cross_entropy(logits, t, pick_first, hold) * w).sum()


def _after(a: mx.array, prev) -> mx.array:
    return a if prev is None else mx.depends(a, prev)


def chunked_ce_sum(head: HeadFn, head_arrays: Sequence[mx.array], h: mx.array,
                   targets: mx.array, weights: mx.array, chunk: int, grad: bool = True
                   ) -> mx.array:
    """sum(cross_entropy(head(h), targets) * weights) for h (N, D) and targets/weights (N,),
    `chunk` rows at a time. Differentiable w.r.t. h only (the head is frozen); grad=False
    (evaluation) skips the gradient work."""
    bounds = [(s, min(s + chunk, h.shape[0])) for s in range(0, h.shape[0], chunk)]
    if not grad:
        total = prev = None
        for s, e in bounds:
            part = ce_sum(head, _after(h[s:e], prev), targets[s:e], weights[s:e], head_arrays)
            total = part if total is None else total + part
            prev = part
        return total

    @mx.custom_function
    def fused(x, t, w, *arrays):
        total, grads, prev = None, [], None
        for s, e in bounds:
            ts, ws = t[s:e], w[s:e]
            (part,), (g,) = mx.vjp(lambda xs, ts=ts, ws=ws: ce_sum(head, xs, ts, ws, arrays,
                                                                 pick_first=True),
                                   [_after(x[s:e], prev)], [mx.array(1.0, mx.float32)])
            total = part if total is None else total + part
            grads.append(g)  # (rows, D)
            prev = [part, g]  # both: a pending loss value would keep its slice's logits alive
        return total, mx.concatenate(grads, axis=0)

    @fused.vjp
    def fused_vjp(primals, cotangents, outputs):
        x, t, w, *arrays = primals
        # Gradients of targets, weights and the frozen head are never used, so never computed.
        rest = [mx.zeros_like(a) for a in (t, w, *arrays)]
        return ((cotangents[0] * outputs[1]).astype(x.dtype), *rest)

    return fused(h, targets, weights, *head_arrays)[0]


def checkpointed_ce_sum(head: HeadFn, head_arrays: Sequence[mx.array], h: mx.array,
                        targets: mx.array, weights: mx.array, chunk: int) -> mx.array:
    """The same sum for a trainable head: each slice recomputes its logits in the backward
    pass (mx.checkpoint), so the head's gradient flows; slices run one after another."""
    total = prev = None
    for s in range(0, h.shape[0], chunk):
        # Only the hidden states and the head are differentiated; targets (integer ids) and
        # weights are bound as constants (mx.checkpoint cannot take integer inputs).
        t, w = targets[s : s + chunk], weights[s : s + chunk]
        fn = mx.checkpoint(lambda x, *a, t=t, w=w: ce_sum(head, x, t, w, a))
        part = fn(_after(h[s : s + chunk], prev), *head_arrays)
        total = part if total is None else total + part
        prev = part
    return total
