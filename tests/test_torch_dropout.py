"""The torch backend's LoRA dropout (backends/torch/dropout.py): nn.Dropout's distribution and
scaling from bulk-drawn masks, seeded by torch's generator, and in place in the trained model."""

from __future__ import annotations

import pytest

from .conftest import needs_torch
from .test_torch_backend import backend, make_recipe, plans, train

pytestmark = [needs_torch, pytest.mark.torch]


def test_drops_p_of_the_values_and_scales_the_rest_like_nn_dropout():
    import torch

    from mlx_eden.backends.torch.dropout import WordDropout

    drop = WordDropout(0.1).train()
    x = torch.ones(400_000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 0.003  # 400k draws: the standard error is 0.0005
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.9], rel=1e-5)  # p: 6554 / 2^16
    assert abs(float(y.detach().mean()) - 1.0) < 0.005  # unbiased, as nn.Dropout
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(mask * x / (1 - p)) / dx = mask / (1 - p)
    # sizes that are not a multiple of 4 (four 16-bit draws per 64-bit word), any shape
    assert WordDropout(0.5).train()(torch.ones(3, 5, 7)).shape == (3, 5, 7)


def test_masks_follow_torch_seed_and_eval_is_the_identity():
    import torch

    from mlx_eden.backends.torch.dropout import WordDropout

    drop, x = WordDropout(0.3).train(), torch.ones(4, 64, 32)
    masks = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        masks.append(drop(x) == 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    assert drop.eval()(x) is x
    with pytest.raises(ValueError):
        WordDropout(1.0)


def test_the_backend_trains_with_it_and_dropout_changes_the_step(tiny_qwen2):
    from mlx_eden.backends.torch.dropout import WordDropout

    losses = {}
    for p in (0.0, 0.3):
        recipe = make_recipe(tiny_qwen2, "model.dtype=float32", f"adapter.dropout={p}")
        impl = backend("torch", recipe, tiny_qwen2)
        drops = [d for m in impl.model.modules() if hasattr(m, "lora_dropout")
                 for d in m.lora_dropout.values()]
        assert drops and all(isinstance(d, WordDropout) == (p > 0) for d in drops)
        train_plan, _ = plans(recipe, tiny_qwen2, vary=False)
        # step 2: lora_b is no longer zero, so the dropped inputs reach the loss
        losses[p] = [r.loss for r in train(impl, [train_plan.batch(0)], 2, lr=1e-2)]
    assert losses[0.0][0] == pytest.approx(losses[0.3][0], abs=1e-6)  # lora_b = 0 at step 1
    assert abs(losses[0.0][1] - losses[0.3][1]) > 1e-6
