"""Packed rows on the fused attention path get an additive float mask (backends/mlx/model.py
attention_mask), not a bool one: MLX applies a bool mask with `where`, whose gradient held one
more batch x heads x L x L square in the backward (memory/attention.mask_bytes). The additive
mask must mean exactly what the bool mask meant."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_eden.backends.mlx import model as M

# Two rows of 48 positions: three samples in the first, two in the second.
SEGMENTS = mx.array([[0] * 20 + [1] * 16 + [2] * 12, [0] * 30 + [1] * 18])


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_packed_mask_is_additive_in_the_compute_dtype(dtype):
    mask = M.attention_mask(SEGMENTS, dtype)
    allowed = np.array(M.allowed_pairs(SEGMENTS))
    assert mask.dtype == dtype and mask.shape == (2, 1, 48, 48)  # the bool mask back fails here
    values = np.array(mask.astype(mx.float32))
    assert (values[allowed] == 0).all()
    assert (values[~allowed] == float(mx.finfo(dtype).min)).all()
    # causal and within one sample: position 20 (sample 1) sees 20 only, not 19 (sample 0)
    assert allowed[0, 0, 20, 20] and not allowed[0, 0, 20, 19] and not allowed[0, 0, 5, 6]


def _attention(q, k, v, mask, w):
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
    return (out.astype(mx.float32) * w).sum()


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_additive_mask_gives_the_bool_masks_attention_bit_for_bit(dtype, kv_heads):
    """MLX's unfused attention (the CPU path, and every path under a gradient): output and the
    gradients of q, k and v equal the bool mask's exactly, with and without GQA."""
    rng = np.random.default_rng(0)
    q = mx.array(rng.normal(size=(2, 4, 48, 16)).astype(np.float32)).astype(dtype)
    k, v = (mx.array(rng.normal(size=(2, kv_heads, 48, 16)).astype(np.float32)).astype(dtype)
            for _ in range(2))
    w = mx.array(rng.normal(size=(2, 4, 48, 16)).astype(np.float32))
    grad = mx.value_and_grad(_attention, argnums=(0, 1, 2))
    bool_value, bool_grads = grad(q, k, v, M.allowed_pairs(SEGMENTS), w)
    value, grads = grad(q, k, v, M.attention_mask(SEGMENTS, dtype), w)
    assert mx.array_equal(value, bool_value).item()
    for g, b in zip(grads, bool_grads, strict=True):
        assert mx.array_equal(g, b).item() and not mx.isnan(g).any().item()


def test_a_row_with_nothing_attended_stays_finite():
    """Why the finite minimum, not -inf: a row masked everywhere (none in packed training: each
    row keeps its diagonal) softmaxes to uniform, as with the bool mask; -inf would give NaN."""
    rng = np.random.default_rng(1)
    q, k, v = (mx.array(rng.normal(size=(1, 2, 8, 16)).astype(np.float32)) for _ in range(3))
    allowed = mx.tril(mx.ones((8, 8), mx.bool_)) & (mx.arange(8)[:, None] != 3)  # row 3: none
    additive = mx.where(allowed, 0.0, float(mx.finfo(mx.float32).min))
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=additive)
    assert mx.array_equal(out, mx.fast.scaled_dot_product_attention(
        q, k, v, scale=0.25, mask=allowed)).item()
    minus_inf = mx.where(allowed, 0.0, float("-inf"))
    assert mx.isnan(mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25,
                                                         mask=minus_inf)).any().item()
