"""The trainer's memory levers: chunked loss, per-layer checkpointing, the streamed optimizer
update and 8-bit AdamW. Each must give the same numbers as the plain path, and the two graph
fixes (chunked loss, checkpointing) must really lower the peak."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from mlx_eden.backends.mlx import model as M
from mlx_eden.backends.mlx.backend import MLXBackend
from mlx_eden.backends.mlx.optimizers import (
    AdamW8bit,
    dequantize_positive,
    dequantize_signed,
    quantize_positive,
    quantize_signed,
)
from mlx_eden.backends.mlx.update import streamed_update
from mlx_eden.memory.measure import synthetic_batch
from mlx_eden.recipe import load_recipe
from mlx_eden.tiny import TinySpec, write_tiny


def _backend(model_dir, *overrides) -> MLXBackend:
    be = MLXBackend()
    be.setup(load_recipe(None, ["model.dtype=float32", "adapter.rank=8", *overrides]), model_dir)
    # Non-zero B matrices, so every adapter matrix gets a gradient.
    be.model.update(tree_map(lambda p: p + 0.01, be.model.trainable_parameters()))
    mx.eval(be.model.parameters())
    return be


def _loss_and_grads(be, batch, *, checkpoint=False, chunk=0, compiled=False):
    fn = partial(M.loss_sum, be.model, packed=batch.packed, checkpoint=checkpoint, chunk=chunk)
    vg = nn.value_and_grad(be.model, fn)
    if compiled:
        state = [be.model.state, mx.random.state]
        vg = mx.compile(vg, inputs=state, outputs=state)
    mx.random.seed(3)  # same dropout masks in every variant
    loss, grads = vg(*be._arrays(batch))
    mx.eval(loss, grads)
    return loss.item(), dict(tree_flatten(grads))


def _assert_same(a, b, tol=1e-5):
    (la, ga), (lb, gb) = a, b
    assert abs(la - lb) <= tol * abs(la)
    for name in ga:
        scale = float(mx.abs(ga[name]).max()) or 1.0
        assert float(mx.abs(ga[name] - gb[name]).max()) <= tol * max(scale, 1.0), name


@pytest.mark.parametrize("fixture", ["tiny_qwen2", "tiny_qwen3", "tiny_qwen2_4bit"])
def test_chunked_loss_and_checkpointing_equal_the_plain_loss(fixture, request):
    be = _backend(request.getfixturevalue(fixture), "adapter.dropout=0.1")
    batch = synthetic_batch(3, 40, 512, packed=True, seed=1)
    plain = _loss_and_grads(be, batch)
    for chunk in (7, 32, 200):  # uneven, smaller and larger than the 120 tokens
        _assert_same(plain, _loss_and_grads(be, batch, chunk=chunk))
    _assert_same(plain, _loss_and_grads(be, batch, checkpoint=True))
    _assert_same(plain, _loss_and_grads(be, batch, checkpoint=True, chunk=16, compiled=True))


def _strict_peak(be, batch, **kw) -> int:
    """Peak of one forward+backward with MLX waiting after every op (memory actually needed)."""
    mx.set_memory_limit(1)
    try:
        _loss_and_grads(be, batch, compiled=True, **kw)  # compile outside the measurement
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        _loss_and_grads(be, batch, compiled=True, **kw)
        return mx.get_peak_memory() - base
    finally:
        mx.set_memory_limit(mx.device_info().get("memory_size", 1 << 40) or 1 << 40)


@pytest.fixture(scope="session")
def wide_vocab(models_dir):
    """Logits dominate: 1 layer, hidden 64, vocab 8192."""
    return write_tiny(models_dir / "wide-vocab", TinySpec(hidden=64, heads=2, kv_heads=1,
                                                          layers=1, intermediate=128, vocab=8192))


@pytest.fixture(scope="session")
def deep_narrow(models_dir):
    """Activations dominate: 6 layers, small vocabulary."""
    return write_tiny(models_dir / "deep-narrow", TinySpec(hidden=128, heads=2, kv_heads=1,
                                                           layers=6, intermediate=512, vocab=384))


def test_chunked_loss_really_lowers_the_peak(wide_vocab):
    """The loss of 2x128 tokens over 8192 words: 8.4 MB of float32 logits, 3 such buffers in the
    backward pass. With 32-token chunks only a chunk's worth may be alive (this failed with the
    old per-chunk mx.checkpoint loop, whose chunks MLX ran side by side)."""
    be = _backend(wide_vocab)
    batch = synthetic_batch(2, 128, 8192, packed=False, seed=2)
    plain = _strict_peak(be, batch)
    chunked = _strict_peak(be, batch, chunk=32)
    assert chunked < 0.5 * plain, (chunked, plain)


def test_checkpointing_really_lowers_the_peak(deep_narrow):
    be = _backend(deep_narrow)
    batch = synthetic_batch(2, 128, 384, packed=False, seed=3)
    plain = _strict_peak(be, batch)
    checkpointed = _strict_peak(be, batch, checkpoint=True)
    assert checkpointed < 0.6 * plain, (checkpointed, plain)


def test_streamed_update_equals_the_optimizer_update(tiny_qwen3):
    be = _backend(tiny_qwen3)
    batch = synthetic_batch(2, 24, 512, packed=False, seed=4)
    _, grads = _loss_and_grads(be, batch)
    grads = {k: v for k, v in grads.items()}
    params = dict(tree_flatten(be.model.trainable_parameters()))
    reference = optim.AdamW(learning_rate=1e-3, weight_decay=0.01, bias_correction=True)
    ref_grads, _ = optim.clip_grad_norm({k: g * 0.5 for k, g in grads.items()}, 0.1)
    expected = reference.apply_gradients(ref_grads, params)
    opt = optim.AdamW(learning_rate=1e-3, weight_decay=0.01, bias_correction=True)
    opt.init(be.model.trainable_parameters())
    from mlx.utils import tree_unflatten
    streamed_update(be.model, opt, tree_unflatten(list(grads.items())), 0.5, 0.1)
    got = dict(tree_flatten(be.model.trainable_parameters()))
    for k in expected:
        np.testing.assert_allclose(np.array(got[k]), np.array(expected[k]), rtol=1e-5, atol=1e-7)


def test_compiled_update_follows_the_learning_rate_and_step(tiny_qwen3):
    """The group update is compiled once (update.py): the learning rate and the step count
    (Adam's bias correction) of later steps must reach it, not the first step's values."""
    from mlx.utils import tree_unflatten

    be = _backend(tiny_qwen3)
    _, grads = _loss_and_grads(be, synthetic_batch(2, 24, 512, packed=False, seed=5))
    params = dict(tree_flatten(be.model.trainable_parameters()))
    reference = optim.AdamW(learning_rate=1e-3, weight_decay=0.01, bias_correction=True)
    opt = optim.AdamW(learning_rate=1e-3, weight_decay=0.01, bias_correction=True)
    opt.init(be.model.trainable_parameters())
    for lr in (1e-3, 4e-2, 0.0):
        reference.learning_rate = opt.learning_rate = lr
        params = reference.apply_gradients(grads, params)
        streamed_update(be.model, opt, tree_unflatten(list(grads.items())), 1.0, None)
    got = dict(tree_flatten(be.model.trainable_parameters()))
    for k in params:
        np.testing.assert_allclose(np.array(got[k]), np.array(params[k]), rtol=1e-5, atol=1e-7)


def test_8bit_codes_round_trip_within_a_few_percent():
    """Square-root code for m: relative error ~1/(127 sqrt(|x|/max)); fourth-root code for v:
    ~2/(255 (v/max)^(1/4)). Checked where those bounds are 2% and 3%."""
    rng = np.random.default_rng(0)
    x = mx.array(rng.standard_normal((16, 64)).astype(np.float32) * 10.0 ** rng.integers(-4, 2, (16, 1)))
    q, s = quantize_signed(x)
    assert q.dtype == mx.int8
    back = dequantize_signed(q, s)
    big = mx.abs(x) > 0.25 * mx.max(mx.abs(x), axis=1, keepdims=True)
    assert float(mx.max(mx.where(big, mx.abs(back - x) / mx.abs(x), 0))) < 0.02
    v = x * x
    qv, sv = quantize_positive(v)
    assert qv.dtype == mx.uint8
    backv = dequantize_positive(qv, sv)
    bigv = v > 1e-2 * mx.max(v, axis=1, keepdims=True)
    assert float(mx.max(mx.where(bigv, mx.abs(backv - v) / v, 0))) < 0.03


def _train(model_dir, optimizer: str, steps: int) -> tuple[list[float], MLXBackend]:
    be = MLXBackend()
    be.setup(load_recipe(None, ["model.dtype=float32", "adapter.rank=8",
                                f"train.optimizer={optimizer}", "train.learning_rate=3e-3",
                                "train.weight_decay=0.01"]), model_dir)
    batches = [synthetic_batch(4, 32, 64, packed=False, seed=k) for k in range(4)]
    losses = [be.train_step([batches[s % 4]], 3e-3, s + 1).loss for s in range(steps)]
    return losses, be


def test_adamw8bit_trains_about_as_well_as_adamw(tiny_qwen2, tmp_path):
    """Memorising four fixed batches (ids < 64 of a 512-word model): the 8-bit run must end
    within 5% of fp32 AdamW's loss, far below where both started."""
    ref, _ = _train(tiny_qwen2, "adamw", 40)
    low, be = _train(tiny_qwen2, "adamw8bit", 40)
    assert isinstance(be.optimizer, AdamW8bit)
    assert abs(low[0] - ref[0]) < 1e-4
    assert np.mean(ref[-4:]) < 0.85 * ref[0], ref
    assert abs(np.mean(low[-4:]) - np.mean(ref[-4:])) < 0.05 * np.mean(ref[-4:]), (low, ref)
    state = dict(tree_flatten(be.optimizer.state))
    assert {a.dtype for k, a in state.items() if k.endswith("_q")} == {mx.int8, mx.uint8}
    be.save_adapter(tmp_path)  # the 8-bit state round-trips through a checkpoint
    be.save_state(tmp_path)
    be.load_state(tmp_path)
    assert {a.dtype for k, a in tree_flatten(be.optimizer.state) if k.endswith("_q")} == \
        {mx.int8, mx.uint8}
