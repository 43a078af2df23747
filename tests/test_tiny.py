import hashlib
import json
import os
import re
import stat

import numpy as np
import pytest

from mlx_eden.tiny import TinySpec, write_tiny

from .conftest import needs_torch, run_cli


def digest(folder):
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path, tiny_qwen2):
    again = write_tiny(tmp_path / "again", TinySpec())
    assert digest(again) == digest(tiny_qwen2)
    other = write_tiny(tmp_path / "other", TinySpec(seed=1))
    assert digest(other) != digest(tiny_qwen2)


def test_layout_and_chatml(tiny_qwen2, tokenizer):
    cfg = json.loads((tiny_qwen2 / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["vocab_size"] % 64 == 0
    assert cfg["hidden_size"] % 256 == 0 and cfg["intermediate_size"] % 256 == 0
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 1
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    for s in ["def f(x):\n    return x * 2", "日本語 🙂 naïve", "12345"]:
        assert tokenizer.decode(tokenizer(s, add_special_tokens=False)["input_ids"]) == s


def _mlx_logits(path, ids):
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(path))
    return np.array(model(mx.array([ids])).astype(mx.float32))


@needs_torch
@pytest.mark.parametrize("which", ["tiny_qwen2", "tiny_qwen3"])
def test_mlx_lm_and_transformers_give_the_same_logits(which, request):
    import torch
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue(which)
    ids = list(range(3, 40))
    ours = _mlx_logits(path, ids)
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits.numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_quantized_variant_loads_in_mlx_lm(tiny_small_4bit, tiny_small):
    cfg = json.loads((tiny_small_4bit / "config.json").read_text())
    assert cfg["quantization"]["bits"] == 4 and cfg["quantization"]["group_size"] == 64
    q = _mlx_logits(tiny_small_4bit, [5, 6, 7, 8])
    f = _mlx_logits(tiny_small, [5, 6, 7, 8])
    assert np.abs(q - f).max() < 0.5 and np.abs(q - f).max() > 0  # quantized, not identical


def test_cli_tiny_rejects_bad_shapes(tmp_path):
    proc = run_cli("tiny", tmp_path / "m", "--hidden", "100", "--heads", "3", "--kv-heads", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --hidden 100 must be divisible by --heads 3"


def test_tiny_around_a_real_tokenizer(qwen3_tokenizer_dir, tmp_path):
    out = tmp_path / "real"
    proc = run_cli("tiny", out, "--arch", "qwen3", "--hidden", "64", "--heads", "2",
                   "--kv-heads", "1", "--intermediate", "128", "--tokenizer", qwen3_tokenizer_dir,
                   check=True)
    assert "tokenizer 151669 ids, embedding 151936 rows; rows 151669..151935 are spare" \
        in proc.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == 151936 and cfg["eos_token_id"] == 151645
    src = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text())
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == \
        src["chat_template"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o666 & ~umask
    small = run_cli("tiny", tmp_path / "small", "--vocab", "151000", "--tokenizer",
                    qwen3_tokenizer_dir)
    assert small.returncode == 2 and not (tmp_path / "small").exists()
    assert "--vocab 151000 is smaller than the tokenizer's 151669 ids" in small.stderr


def test_tiny_says_when_the_vocabulary_is_padded(tmp_path):
    proc = run_cli("tiny", tmp_path / "m", "--vocab", "4096", "--hidden", "64", "--heads", "2",
                   "--kv-heads", "1", "--intermediate", "128", check=True)
    n = int(re.search(r"tokenizer (\d+) ids", proc.stdout).group(1))
    assert n < 4096 and f"rows {n}..4095 are spare" in proc.stdout
