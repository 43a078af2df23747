"""Packing changes only the layout: the same samples give the same loss and gradients whether
each has its own row or several share one (block-diagonal attention, positions not restarted)."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_eden.backends.mlx import model as M
from mlx_eden.backends.mlx.backend import MLXBackend
from mlx_eden.backends.mlx.chunked_loss import cross_entropy
from mlx_eden.data.batching import BatchPlan, collate
from mlx_eden.data.render import Sample, load_tokenizer
from mlx_eden.data.splits import load_splits
from mlx_eden.recipe import load_recipe

from .conftest import ROOT


def _setup(model_dir, chunk: int):
    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml", [
        f"model.path={model_dir}", "data.max_seq_length=128", f"train.loss_chunk={chunk}"])
    backend = MLXBackend()
    backend.setup(recipe, model_dir)
    # lora_b starts at zero, which would leave lora_a's gradient zero: give both a value.
    rng = np.random.default_rng(0)
    for _, module in backend.model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.array(rng.normal(0, 0.02, module.lora_b.shape).astype(np.float32))
    tok = load_tokenizer(model_dir)
    # Real conversations cut to a spread of lengths, so that some rows hold several samples.
    lengths = [128, 90, 70, 60, 50, 45, 40, 33, 30, 24, 20, 16]
    real = load_splits(recipe.data, tok, 0).train
    # Each cut keeps trained tokens in its second half, so that a sample packed after another
    # one has loss-bearing tokens whose attention could leak into its neighbour (cut at the
    # start of a conversation, the later samples of a shared row trained nothing and the test
    # passed with the block-diagonal mask removed).
    samples = [Sample(s.ids[:n], np.arange(n) >= n // 2)
               for s, n in zip(real[: len(lengths)], lengths, strict=True)]
    return recipe, backend, samples, tok.pad_token_id


def _loss_and_grads(backend, plan: BatchPlan, chunk: int, block_mask: bool = True):
    """Summed loss, trained tokens and summed gradients over every batch of `plan`.
    block_mask=False is the mutation: packed rows with a plain causal mask."""
    def loss(model, *arrays):
        return M.loss_sum(model, *arrays, packed=plan.packing and block_mask, checkpoint=False,
                          chunk=chunk)

    step = nn.value_and_grad(backend.model, loss)
    total, tokens, grads = 0.0, 0, None
    for batch in plan.in_order():
        value, g = step(backend.model, *(mx.array(a) for a in (batch.inputs, batch.targets,
                                                                 batch.mask, batch.segments)))
        flat = {k: np.array(v, dtype=np.float64) for k, v in tree_flatten(g)}
        grads = flat if grads is None else {k: grads[k] + flat[k] for k in grads}
        total += float(value)
        tokens += batch.trained_tokens
    return total, tokens, grads


@pytest.mark.parametrize("arch,chunk", [("qwen2", 0), ("qwen3", 0), ("qwen2", 96)])
def test_packed_loss_and_gradients_equal_unpacked(arch, chunk, tiny_qwen2, tiny_qwen3):
    model_dir = tiny_qwen2 if arch == "qwen2" else tiny_qwen3
    _, backend, samples, pad = _setup(model_dir, chunk)
    unpacked = BatchPlan(samples, batch_size=4, row_len=128, pad_id=pad, packing=False)
    packed = BatchPlan(samples, batch_size=2, row_len=128, pad_id=pad, packing=True)
    shared = [b for b in packed.in_order() if (b.segments.max(axis=1) > 1).any()]
    assert shared, "the packed plan should put several samples in one row"
    later_trained = sum(float(b.mask[b.segments > 1].sum()) for b in shared)
    assert later_trained > 0, "a later sample of a shared row must carry trained tokens"

    loss_u, tokens_u, grads_u = _loss_and_grads(backend, unpacked, chunk)
    loss_p, tokens_p, grads_p = _loss_and_grads(backend, packed, chunk)
    assert tokens_u == tokens_p == sum(s.trained for s in samples)
    assert abs(loss_u / tokens_u - loss_p / tokens_p) <= 1e-5
    assert grads_u.keys() == grads_p.keys()
    scale = max(np.abs(g).max() for g in grads_u.values())
    assert scale > 1e-3  # real gradients flow to lora_a and lora_b
    worst = max(np.abs(grads_u[k] - grads_p[k]).max() for k in grads_u) / tokens_u
    assert worst <= 1e-5, worst


def test_packing_without_the_block_mask_changes_the_loss(tiny_qwen2):
    """The mutation check: the test above fails when packed rows attend across samples."""
    _, backend, samples, pad = _setup(tiny_qwen2, 0)
    unpacked = BatchPlan(samples, batch_size=4, row_len=128, pad_id=pad, packing=False)
    packed = BatchPlan(samples, batch_size=2, row_len=128, pad_id=pad, packing=True)
    loss_u, tokens, grads_u = _loss_and_grads(backend, unpacked, 0)
    loss_m, _, grads_m = _loss_and_grads(backend, packed, 0, block_mask=False)
    assert abs(loss_u - loss_m) / tokens > 1e-3
    worst = max(np.abs(grads_u[k] - grads_m[k]).max() for k in grads_u) / tokens
    assert worst > 1e-4, worst


def test_fast_cross_entropy_equals_mlx(tiny_qwen2):
    """The base-2 cross-entropy (chunked_loss.cross_entropy) against mlx's own, values and grads."""
    rng = np.random.default_rng(1)
    logits = mx.array(rng.normal(0, 4, (3, 37, 512)).astype(np.float32))
    targets = mx.array(rng.integers(0, 512, (3, 37)).astype(np.int32))
    ours = mx.value_and_grad(lambda x: cross_entropy(x, targets).sum())(logits)
    theirs = mx.value_and_grad(lambda x: nn.losses.cross_entropy(x, targets).sum())(logits)
    np.testing.assert_allclose(cross_entropy(logits, targets),
                               nn.losses.cross_entropy(logits, targets), rtol=1e-5, atol=1e-5)
    assert abs(float(ours[0]) - float(theirs[0])) <= 1e-5 * abs(float(theirs[0]))
    np.testing.assert_allclose(np.array(ours[1]), np.array(theirs[1]), atol=1e-6)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])  # tied and untied head
def test_chunked_loss_equals_plain_loss(arch, tiny_qwen2, tiny_qwen3):
    """train.loss_chunk computes the head's gradient chunk by chunk in the forward pass (or
    recomputes chunks when the head trains): values and gradients match the plain loss."""
    model_dir = tiny_qwen2 if arch == "qwen2" else tiny_qwen3
    _, backend, samples, pad = _setup(model_dir, 0)
    batch = next(BatchPlan(samples, 4, 128, pad, packing=False).in_order())
    arrays = [mx.array(a) for a in (batch.inputs, batch.targets, batch.mask, batch.segments)]

    def run(chunk, grad=True):
        def loss(model, *a):
            return M.loss_sum(model, *a, packed=False, checkpoint=False, chunk=chunk, grad=grad)

        value, g = nn.value_and_grad(backend.model, loss)(backend.model, *arrays)
        return float(value), {k: np.array(v) for k, v in tree_flatten(g)}

    plain, grads = run(0)
    for chunk in (40, 1000):
        value, chunked = run(chunk)
        assert abs(value - plain) <= 1e-5 * abs(plain)
        # float32 sums in another order: 1.43e-6 on an Intel Xeon's MKL kernels (< 1e-6 on the
        # machines before), a few float32 ulps of gradients of order 1.
        assert max(np.abs(grads[k] - chunked[k]).max() for k in grads) <= 4e-6
    evaluated = M.loss_sum(backend.model, *arrays, packed=False, checkpoint=False, chunk=40,
                           grad=False)
    assert abs(float(evaluated) - plain) <= 1e-5 * abs(plain)
    # A trainable head cannot use the fused gradient: the checkpointed chunks take over.
    M.head_module(backend.model).unfreeze()
    value, with_head = run(40)
    assert abs(value - plain) <= 1e-5 * abs(plain)
    assert len(with_head) > len(grads)


@pytest.mark.parametrize("chunk", [0, 96])
def test_loss_at_trained_positions_only_equals_the_full_loss(chunk, tiny_qwen2):
    """The MLX backend computes the head and the loss only at a batch's trained positions
    (BatchPlan.loss_positions, padded with weight 0): the compiled micro-step and evaluation
    give the loss and gradients of every position, and the plan does less work."""
    _, backend, samples, pad = _setup(tiny_qwen2, chunk)
    backend._build()
    # Row 0 trained from position 0 on, and 8 more loss positions than trained ones: a padding
    # entry (it points at position 0) that kept that position's weight would count it twice.
    whole = Sample(samples[3].ids, np.ones(len(samples[3].ids), bool))
    first = collate(samples + [whole], [[len(samples)], [1]], pad, True)
    first.loss_positions = first.trained_tokens + 8
    plan = BatchPlan(samples, batch_size=3, row_len=128, pad_id=pad, packing=True)
    batches = list(plan.in_order())
    assert all(b.trained_tokens <= b.loss_positions for b in batches)
    assert sum(b.loss_positions for b in batches) < 0.8 * sum(b.inputs.size for b in batches)
    for batch in (first, max(batches, key=lambda b: b.inputs.size)):  # 2 traces each: time
        every = dataclasses.replace(batch, loss_positions=None)
        assert len(backend._loss_arrays(batch)) == 5 and len(backend._loss_arrays(every)) == 4
        ours, full = backend.eval_loss(batch)[0], backend.eval_loss(every)[0]
        assert abs(ours - full) <= 1e-6 * abs(full), (ours, full)
        (loss, grads), (loss_f, grads_f) = (backend._micro[b.packed](*backend._loss_arrays(b))
                                            for b in (batch, every))
        assert abs(loss.item() - loss_f.item()) <= 1e-6 * abs(loss_f.item())
        for (name, g), (_, g_f) in zip(tree_flatten(grads), tree_flatten(grads_f), strict=True):
            # atol: 3 of 4,096 near-zero entries differ by 2.0e-7 on an Intel Xeon's MKL kernels
            # (float32 sums in another order; within 1e-7 on the machines before).
            np.testing.assert_allclose(np.array(g), np.array(g_f), rtol=1e-5, atol=1e-6,
                                       err_msg=name)
