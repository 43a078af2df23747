"""An adapter loud enough that the tiny model's greedy answers differ from prompt to prompt and
token to token (the random-init base, and the export tests' gentle adapter, repeat one token),
so generation tests compare real sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def loud_lora(tiny_qwen2, tmp_path_factory) -> Path:
    import mlx.core as mx

    from mlx_eden.backends.mlx.backend import MLXBackend
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml",
                         [f"model.path={tiny_qwen2}", "model.dtype=float32", "adapter.rank=8",
                          "adapter.alpha=16"])
    backend = MLXBackend()
    backend.setup(recipe, tiny_qwen2)
    mx.random.seed(3)
    for _, module in backend.model.named_modules():
        if hasattr(module, "lora_b"):  # 0.3: varied answers (0.05 still repeats one token)
            module.lora_b = 0.3 * mx.random.normal(module.lora_b.shape)
    out = tmp_path_factory.mktemp("eval-adapters") / "loud"
    backend.save_adapter(out)
    return out
