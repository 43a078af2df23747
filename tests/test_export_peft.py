"""PEFT interop, checked with peft.PeftModel on torch (float32) against MLX base + adapter:
our adapters exported to PEFT, and adapters made by PEFT imported into ours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_eden.errors import UserError

from .conftest import run_cli

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

PROMPTS = [[5, 17, 200, 33, 90, 11, 300, 4, 250, 61, 7, 8], [509, 510, 100, 101, 102, 511]]


def mlx_logits(model_dir, adapter):
    from mlx_eden.backends.mlx.inference import folder_logits

    return np.concatenate(folder_logits(model_dir, PROMPTS, adapter))


def peft_logits(model_dir, peft_dir):
    from mlx_eden.backends.torch.peft_logits import peft_logits

    return np.concatenate(peft_logits(model_dir, peft_dir, PROMPTS))


@pytest.mark.parametrize("which", ["lora_qwen2", "lora_qwen3", "dora_qwen2"])
def test_exported_peft_matches_mlx(which, request, tmp_path):
    """qwen2 LoRA everywhere; qwen3 rsLoRA on the last layer's attention; qwen2 DoRA."""
    from mlx_eden.export.peft import export_peft

    arch = which.split("_")[1]
    base, adapter = request.getfixturevalue(f"tiny_{arch}"), request.getfixturevalue(which)
    config = export_peft(adapter, tmp_path / "peft")
    want, got = mlx_logits(base, adapter), peft_logits(base, tmp_path / "peft")
    delta = np.abs(got - want).max()
    print(f"{which}: PeftModel vs MLX base+adapter max|Δlogit| = {delta:.2e}")
    assert delta <= 1e-4
    if which == "lora_qwen3":
        assert config["use_rslora"] and config["layers_to_transform"] == [1]
        assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]


def make_peft_adapter(base, out, **lora_kwargs):
    """An adapter created by PEFT itself, with non-zero B so it changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora_kwargs))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
            if "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn_like(p))
    model.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_peft_made_adapter_imports_and_matches(kind, tiny_qwen3, tmp_path):
    from mlx_eden.export.peft import import_peft

    peft_dir = make_peft_adapter(tiny_qwen3, tmp_path / "peft", r=4, lora_alpha=12,
                                 target_modules=["q_proj", "v_proj", "down_proj"],
                                 use_dora=kind == "dora", use_rslora=kind == "lora")
    config = import_peft(peft_dir, tmp_path / "ours")
    assert config["fine_tune_type"] == kind and config["num_layers"] == 2
    want, got = peft_logits(tiny_qwen3, peft_dir), mlx_logits(tiny_qwen3, tmp_path / "ours")
    bare = mlx_logits(tiny_qwen3, None)
    delta = np.abs(got - want).max()
    print(f"PEFT-made {kind} imported: MLX vs PeftModel max|Δlogit| = {delta:.2e} "
          f"(adapter effect {np.abs(want - bare).max():.2e})")
    assert delta <= 1e-4 and np.abs(want - bare).max() > 1e-2


def test_round_trip_is_exact(lora_qwen3, tmp_path):
    from safetensors.numpy import load_file

    from mlx_eden.export.peft import export_peft, import_peft

    export_peft(lora_qwen3, tmp_path / "peft")
    proc = run_cli("import", "peft", tmp_path / "peft", "--output", tmp_path / "back", check=True)
    assert "lora r=8, last 1 layers" in proc.stdout
    a = load_file(str(lora_qwen3 / "adapters.safetensors"))
    b = load_file(str(tmp_path / "back" / "adapters.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    ca = json.loads((lora_qwen3 / "adapter_config.json").read_text())
    cb = json.loads((tmp_path / "back" / "adapter_config.json").read_text())
    assert ca["lora_parameters"]["scale"] == pytest.approx(cb["lora_parameters"]["scale"])
    assert (ca["num_layers"], ca["eden"]) == (cb["num_layers"], cb["eden"])
    with pytest.raises(UserError, match="modules_to_save"):
        cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
        (tmp_path / "peft" / "adapter_config.json").write_text(
            json.dumps({**cfg, "modules_to_save": ["lm_head"]}))
        import_peft(tmp_path / "peft", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_partial_layers_need_the_base(tiny_qwen3, tmp_path):
    """PEFT adapting only layer 0 cannot be said as mlx-lm's "last N layers": refused, and
    without the base its depth is unknown, which is refused too."""
    from mlx_eden.export.peft import import_peft

    peft_dir = make_peft_adapter(tiny_qwen3, tmp_path / "peft", r=4, lora_alpha=8,
                                 target_modules=["q_proj"], layers_to_transform=[0])
    with pytest.raises(UserError, match=r"covers layers \[0\] of 2"):
        import_peft(peft_dir, tmp_path / "ours", tiny_qwen3)
    cfg = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path":
                                                              "Qwen/not-here"}))
    with pytest.raises(UserError, match="base is unknown"):
        import_peft(peft_dir, tmp_path / "ours")
