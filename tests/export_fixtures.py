"""Session fixtures for the fuse/export tests: adapters with random non-zero weights (a zero
lora_b would make every comparison pass trivially), built once with the real MLX backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_eden.tiny import TinySpec, write_tiny

ROOT = Path(__file__).resolve().parent.parent


def build_adapter(model: Path, out: Path, *overrides: str, seed: int = 1) -> Path:
    """An adapter on `model` (tiny-demo recipe + overrides) with lora_b ~ N(0, 0.05²) and, for
    DoRA, magnitudes perturbed by ~10%, saved exactly as `eden-mlx train` saves one."""
    import mlx.core as mx

    from mlx_eden.backends.mlx.backend import MLXBackend
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml",
                         [f"model.path={model}", "adapter.rank=8", "adapter.alpha=16",
                          *overrides])
    backend = MLXBackend()
    backend.setup(recipe, model)
    mx.random.seed(seed)
    for _, module in backend.model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = 0.05 * mx.random.normal(module.lora_b.shape)
            if hasattr(module, "m"):
                module.m = module.m * (1 + 0.1 * mx.random.normal(module.m.shape))
    backend.save_adapter(out)
    return out


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def lora_qwen2(tiny_qwen2, adapters_dir) -> Path:
    """LoRA on all seven projections of every layer of the tied Qwen2."""
    return build_adapter(tiny_qwen2, adapters_dir / "lora-qwen2")


@pytest.fixture(scope="session")
def lora_qwen3(tiny_qwen3, adapters_dir) -> Path:
    """rsLoRA (scale alpha/sqrt(r)) on attention only, last layer only, of the untied Qwen3:
    exercises scale conversion and partial layers in every format."""
    return build_adapter(tiny_qwen3, adapters_dir / "lora-qwen3", "adapter.rslora=true",
                         "adapter.targets=[attention]", "adapter.layers=1", seed=2)


@pytest.fixture(scope="session")
def dora_qwen2(tiny_qwen2, adapters_dir) -> Path:
    return build_adapter(tiny_qwen2, adapters_dir / "dora-qwen2", "adapter.type=dora", seed=3)


@pytest.fixture(scope="session")
def fused_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fused")


@pytest.fixture(scope="session")
def fused_qwen2(tiny_qwen2, lora_qwen2, fused_dir) -> Path:
    from mlx_eden.export.fuse import fuse

    return fuse(str(tiny_qwen2), lora_qwen2, fused_dir / "qwen2", dtype="f32").output


@pytest.fixture(scope="session")
def fused_qwen3(tiny_qwen3, lora_qwen3, fused_dir) -> Path:
    from mlx_eden.export.fuse import fuse

    return fuse(str(tiny_qwen3), lora_qwen3, fused_dir / "qwen3", dtype="f32").output


@pytest.fixture(scope="session")
def tiny_padded_vocab(models_dir) -> Path:
    """576 embedding rows for 512 token ids, as Qwen pads its vocabulary (152064 rows for
    151665 tokens): the GGUF must name the unused rows."""
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    out = write_tiny(models_dir / "tiny-padded", TinySpec(tied=False, seed=4))
    weights = load_file(str(out / "model.safetensors"))
    rng = np.random.default_rng(4)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        extra = (rng.standard_normal((64, weights[name].shape[1])) * 0.02).astype(np.float32)
        weights[name] = np.concatenate([weights[name], extra])
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "vocab_size": 576}, indent=2))
    return out


@pytest.fixture(scope="session")
def tiny_odd_hidden(models_dir) -> Path:
    """hidden 320: rows of the q/k/v/gate/up matrices are not a multiple of 256 (K-quants)."""
    return write_tiny(models_dir / "tiny-odd", TinySpec(hidden=320, heads=4, kv_heads=2,
                                                        intermediate=512, seed=5))
