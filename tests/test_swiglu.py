"""SwiGLU with its sigmoid as a power of 2 (backends/mlx/swiglu.py): mlx-lm's values and
gradients, finite where 2^(-g log2 e) overflows, and really what mlx-lm's MLP calls in training."""

from __future__ import annotations

import mlx.core as mx
import pytest
from mlx_lm.models import activations

from mlx_eden.backends.mlx import attention as A
from mlx_eden.backends.mlx import model as M
from mlx_eden.backends.mlx.swiglu import swiglu
from mlx_eden.recipe import load_recipe


def _value_and_grads(fn, gate, x, w):
    return mx.value_and_grad(lambda g, y: (fn(g, y) * w).sum(), argnums=(0, 1))(gate, x)


def test_swiglu_equals_mlx_lm_with_gradients():
    mx.random.seed(0)
    gate, x, w = (mx.random.normal((3, 64, 96)) * 4 for _ in range(3))
    (l0, g0), (l1, g1) = (_value_and_grads(f, gate, x, w) for f in (activations.swiglu, swiglu))
    assert abs(l1.item() - l0.item()) <= 1e-5 * abs(l0.item())
    for a, b in zip(g0, g1, strict=True):
        assert mx.abs(a - b).max().item() <= 1e-5 * mx.abs(a).max().item()


def test_swiglu_is_finite_where_the_power_overflows():
    gate = mx.array([-1e4, -500.0, -89.0, -20.0, 0.0, 20.0, 500.0])
    x = mx.ones_like(gate)
    (_, (dg, dx)), (_, (rg, rx)) = (_value_and_grads(f, gate, x, mx.ones_like(gate))
                                    for f in (swiglu, activations.swiglu))
    assert mx.all(mx.isfinite(dg)).item() and mx.all(mx.isfinite(dx)).item()
    assert mx.allclose(swiglu(gate, x), activations.swiglu(gate, x), atol=1e-6).item()
    assert mx.allclose(dg, rg, atol=1e-6).item() and mx.allclose(dx, rx, atol=1e-6).item()


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_training_layers_call_it_and_restore_mlx_lm(arch, request):
    model_dir = request.getfixturevalue(f"tiny_{arch}")
    recipe = load_recipe(None, [f"model.path={model_dir}", "model.dtype=float32"])
    model, _ = M.load_base(model_dir, recipe.model, "float32")
    layer = M.inner(model).layers[0]
    calls = []
    original = A.fast_swiglu
    A.fast_swiglu = lambda g, x: calls.append(g.shape) or original(g, x)
    try:
        with A.installed(layer):
            layer(mx.zeros((1, 8, model.args.hidden_size)), mx.zeros((1, 8), mx.int32))
    finally:
        A.fast_swiglu = original
    assert calls == [(1, 8, model.args.intermediate_size)]
    module = __import__(type(layer.mlp).__module__, fromlist=["swiglu"])
    assert module.swiglu is activations.swiglu  # put back on the way out
