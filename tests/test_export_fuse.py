"""`eden-mlx fuse`: the fused folder gives the logits of base + adapter, loads in mlx-lm and
transformers, never keeps a quantization block when de-quantized, and requantizing says what it
costs. Also: an adapter written by `eden-mlx train` loads in mlx-lm's own CLI unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlx_eden.errors import UserError

from .conftest import needs_torch, run_cli

PROMPTS = [[5, 17, 200, 33, 90, 11, 300, 4, 250, 61, 7, 8], [509, 510, 100, 101, 102, 511]]


def mlx_logits(model_dir, adapter=None, prompts=PROMPTS):
    from mlx_eden.backends.mlx.inference import folder_logits

    return np.concatenate(folder_logits(model_dir, prompts, adapter))


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_fused_logits_equal_base_plus_adapter(arch, request, tmp_path):
    """qwen2 (tied, all projections) through the real CLI; qwen3 (untied, rsLoRA, attention of
    the last layer only) through the library the CLI calls."""
    base = request.getfixturevalue(f"tiny_{arch}")
    adapter = request.getfixturevalue(f"lora_{arch}")
    out = tmp_path / "fused"
    if arch == "qwen2":
        proc = run_cli("fuse", "--model", base, "--adapter", adapter, "--output", out,
                       "--dtype", "f32", check=True)
        assert "lora r=8 adapter fused" in proc.stdout
    else:
        from mlx_eden.export.fuse import fuse

        fuse(str(base), adapter, out, dtype="f32")
    want, got, bare = mlx_logits(base, adapter), mlx_logits(out), mlx_logits(base)
    delta = np.abs(got - want).max()
    print(f"{arch}: fused vs base+adapter max|Δlogit| = {delta:.2e}; "
          f"adapter effect {np.abs(want - bare).max():.2e}")
    assert delta <= 1e-4
    assert np.abs(want - bare).max() > 1e-2  # the adapter really changes the model
    config = json.loads((out / "config.json").read_text())
    assert "quantization" not in config and config["torch_dtype"] == "float32"
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes()
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "numpy") as f, \
            safe_open(str(base / "model.safetensors"), "numpy") as g:
        assert sorted(f.keys()) == sorted(g.keys())  # Hugging Face names, nothing extra
        assert f.metadata()["format"] == "pt"


def test_fuse_dora(tiny_qwen2, dora_qwen2, tmp_path):
    from mlx_eden.export.fuse import fuse

    out = fuse(str(tiny_qwen2), dora_qwen2, tmp_path / "fused", dtype="f32").output
    delta = np.abs(mlx_logits(out) - mlx_logits(tiny_qwen2, dora_qwen2)).max()
    print(f"DoRA fused vs base+adapter max|Δlogit| = {delta:.2e}")
    assert delta <= 1e-4


def test_fuse_into_quantized_base_dequantizes(tiny_qwen2_4bit, lora_qwen2, tmp_path):
    """The 4-bit base is de-quantized, the delta added in float32, nothing re-quantized."""
    from mlx_eden.export.fuse import fuse

    report = fuse(str(tiny_qwen2_4bit), lora_qwen2, tmp_path / "fused", dtype="f32")
    config = json.loads((report.output / "config.json").read_text())
    assert "quantization" not in config and "quantization_config" not in config
    delta = np.abs(mlx_logits(report.output) - mlx_logits(tiny_qwen2_4bit, lora_qwen2)).max()
    print(f"4-bit base: fused (de-quantized) vs quantized base+adapter max|Δlogit| = {delta:.2e}")
    assert delta <= 1e-4
    import mlx.core as mx  # reads the dtypes as stored (fuse needs no gguf extra)

    tensors = mx.load(str(report.output / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {mx.float32}


def test_requantize_is_explicit_and_measured(tiny_qwen2, lora_qwen2, tmp_path):
    from mlx_eden.export.fuse import fuse

    out = tmp_path / "q4"
    report = fuse(str(tiny_qwen2), lora_qwen2, out, requantize=4)
    (warning,) = report.warnings
    assert "re-quantized to 4 bits: logits moved by mean |Δ|" in warning
    assert "while the adapter itself moves them by" in warning
    change, effect = report.requantized["change"], report.requantized["adapter_effect"]
    print(f"requantize 4-bit: {warning}")
    assert 0 < change["mean_abs"] and effect["mean_abs"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": 4}
    got = mlx_logits(out)  # mlx-lm loads the quantized folder
    assert np.isfinite(got).all()
    # The CLI names what the folder holds: 4-bit weights, not the scales' float dtype.
    proc = run_cli("fuse", "--model", tiny_qwen2, "--adapter", lora_qwen2, "--output",
                   tmp_path / "cli-q4", "--requantize", "4", check=True)
    assert "4-bit, group 64, scales float32" in proc.stdout, proc.stdout


@needs_torch
def test_sharded_bf16_folder_loads_in_transformers_and_mlx_lm(tiny_qwen3, lora_qwen3, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from mlx_eden.export.fuse import fuse

    report = fuse(str(tiny_qwen3), lora_qwen3, tmp_path / "fused", dtype="bf16",
                  max_shard_gb=0.5 / 1024)  # 0.5 MB shards: several files + index
    shards = sorted(p.name for p in report.output.glob("model-*.safetensors"))
    assert len(shards) > 1 and (report.output / "model.safetensors.index.json").is_file()
    hf = AutoModelForCausalLM.from_pretrained(str(report.output), dtype=torch.float32)
    with torch.no_grad():
        theirs = np.concatenate([hf(torch.tensor([p])).logits[0].numpy() for p in PROMPTS])
    ours = mlx_logits(report.output)
    delta = np.abs(ours - theirs).max()
    print(f"bf16 sharded fused folder: transformers vs mlx-lm max|Δlogit| = {delta:.2e}")
    assert delta <= 1e-3
    exact = mlx_logits(tiny_qwen3, lora_qwen3)
    assert np.abs(ours - exact).max() <= 5e-2  # bf16 rounding only


def test_fuse_refuses_an_adapter_of_another_depth(tiny_qwen2, lora_qwen2, tmp_path, models_dir):
    from mlx_eden.export.fuse import fuse
    from mlx_eden.tiny import TinySpec, write_tiny

    deeper = write_tiny(models_dir / "tiny-3-layers", TinySpec(layers=3))
    with pytest.raises(UserError, match="trained on a 2-layer model, the base has 3"):
        fuse(str(deeper), lora_qwen2, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    proc = run_cli("fuse", "--model", deeper, "--adapter", tmp_path, "--output", tmp_path / "y")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no adapter_config.json" in proc.stderr


@pytest.fixture(scope="session")
def trained_run(tiny_qwen2, tmp_path_factory):
    """Two real training steps (what `eden-mlx train` runs, in-process to save a start-up)."""
    from mlx_eden.recipe import load_recipe
    from mlx_eden.run.train import run_training

    from .export_fixtures import ROOT

    run = tmp_path_factory.mktemp("run") / "r"
    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml", [
        f"model.path={tiny_qwen2}", "train.backend=mlx", "train.max_steps=2",
        "train.batch_size=1", "data.max_seq_length=128", "train.eval_batches=1"])
    assert run_training(recipe, output=str(run)).status == "completed"
    return run


def test_trained_adapter_loads_in_mlx_lm_generate(trained_run, tiny_qwen2):
    proc = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model",
                           str(tiny_qwen2), "--adapter-path", str(trained_run / "adapter"),
                           "--prompt", "hi", "--max-tokens", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Generation:" in proc.stdout and "tokens-per-sec" in proc.stdout
