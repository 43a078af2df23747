"""Blocked causal attention (backends/torch/attention.py): the same numbers as sdpa, and the
bf16 base really runs it (packed rows and generation keep sdpa)."""

from __future__ import annotations

import pytest

from .conftest import needs_torch
from .test_torch_backend import backend, make_recipe, packed_index, plans

pytestmark = [needs_torch, pytest.mark.torch]


@pytest.mark.parametrize("length", [1, 3, 4, 9, 16])
def test_blocked_causal_equals_sdpa_forward_and_backward(length):
    """Blocks of 4 over widths below, at and across block edges; GQA 4 query / 2 kv heads.
    Dropping the causal mask, the block offset or the head grouping fails this."""
    import torch
    import torch.nn.functional as F

    from mlx_eden.backends.torch.attention import blocked_causal

    g = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, h, length, 8, generator=g, dtype=torch.float64,
                           requires_grad=True) for h in (4, 2, 2))
    up = torch.randn(2, 4, length, 8, generator=g, dtype=torch.float64)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    grads = torch.autograd.grad(want, (q, k, v), up)
    have = blocked_causal(q, k, v, 8**-0.5, block=4)
    torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-10)
    for a, b in zip(torch.autograd.grad(have, (q, k, v), up), grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _count_blocked(attention, monkeypatch) -> list:
    """A list that grows by one on every call of the real blocked_causal (a spy, not a mock)."""
    calls, real = [], attention.blocked_causal
    monkeypatch.setattr(attention, "blocked_causal",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _loss(impl, batch) -> float:
    import torch

    with torch.no_grad():
        return impl._loss_sum(batch).item() / batch.trained_tokens


def test_bf16_base_runs_blocked_attention_close_to_sdpa(tiny_qwen2, monkeypatch):
    import torch

    from mlx_eden.backends.torch import attention

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no native bf16 here: the base stays float32 (sdpa)")
    calls = _count_blocked(attention, monkeypatch)
    recipe = make_recipe(tiny_qwen2, "model.dtype=bfloat16", "data.packing=false")
    train_plan, _ = plans(recipe, tiny_qwen2, vary=False)
    impl = backend("torch", recipe, tiny_qwen2)
    batch = train_plan.batch(0)
    blocked = _loss(impl, batch)
    layers = impl.lm.config.num_hidden_layers
    assert len(calls) == layers  # every layer, one call each
    impl.lm.config._attn_implementation = "sdpa"  # the layers read it on every call
    reference = _loss(impl, batch)
    assert len(calls) == layers
    assert abs(blocked - reference) <= 2e-2 * abs(reference), (blocked, reference)


def test_packed_rows_and_generation_keep_sdpa(tiny_qwen2, monkeypatch):
    import torch

    from mlx_eden.backends.torch import attention

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no native bf16 here: the base stays float32 (sdpa)")
    calls = _count_blocked(attention, monkeypatch)
    recipe = make_recipe(tiny_qwen2, "model.dtype=bfloat16", "data.packing=true")
    train_plan, _ = plans(recipe, tiny_qwen2)
    impl = backend("torch", recipe, tiny_qwen2)
    batch = train_plan.batch(packed_index(train_plan))
    assert batch.packed
    assert torch.isfinite(torch.tensor(_loss(impl, batch)))
    assert calls == []  # the block-diagonal mask goes to sdpa
    out = impl.generate([[5, 6, 7, 8]], max_new_tokens=3, stop=set())
    assert len(out[0]) == 3
    assert len(calls) == impl.lm.config.num_hidden_layers  # the prompt only; decoding is sdpa
