"""GGUF export checked in llama.cpp itself (llama-cpp-python, float32 KV cache) against MLX.

Float files are compared with MLX running the fused float32 folder; quantized files with MLX
running the very weights the file holds (read back with gguf-py's dequantizer), so the check
measures the exporter and llama.cpp's kernels, not quantization error.
"""

from __future__ import annotations

import pytest

from mlx_eden.errors import UserError

from .conftest import run_cli

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytestmark = pytest.mark.gguf

# Tokenizer probe: ChatML with special tokens, code, CJK, emoji, digits, whitespace runs.
TEXTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "What is 17 times 43?<|im_end|>\n<|im_start|>assistant\n17 times 43 is 731.<|im_end|>\n",
    "def fib(n: int) -> int:\n\tif n < 2:\n\t\treturn n\n    return fib(n-1) + fib(n-2)  # ok\n",
    "for (int i = 0; i < 10; ++i) { sum += a[i] * 2; }  // C++ \r\n",
    "我想在apple工作1314151天～ 你好，世界！ 日本語のテキスト、한국어 텍스트",
    "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like tea?",
    "   leading spaces\n\n\n\ttabs\t\tand trailing   \n",
    "naïve café — “quotes” … ¿qué? ñandú 12,345.67 -89",
]


def llama_logits(path, prompts, lora=None):
    from mlx_eden.export.llamacpp import LlamaCpp

    llm = LlamaCpp(path, lora=lora)
    try:
        return llm.all_logits(prompts)
    finally:
        llm.close()


def mlx_logits(model_dir, prompts, adapter=None):
    from mlx_eden.backends.mlx.inference import folder_logits

    return folder_logits(model_dir, prompts, adapter)


def prompts_of(model_dir):
    from mlx_eden.export.probe import probe_ids

    return probe_ids(model_dir)


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


def export(model_dir, out, quant, **kw):
    from mlx_eden.export.to_gguf import export_gguf

    return export_gguf(model_dir, out, quant, **kw)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_f32_and_f16_match_mlx(arch, request, gguf_dir):
    fused = request.getfixturevalue(f"fused_{arch}")
    prompts = prompts_of(fused)
    want = mlx_logits(fused, prompts)
    from mlx_eden.export.probe import compare

    f32 = compare(llama_logits(export(fused, gguf_dir / f"{arch}-f32.gguf", "f32").path,
                               prompts), want)
    f16 = compare(llama_logits(export(fused, gguf_dir / f"{arch}-f16.gguf", "f16").path,
                               prompts), want)
    print(f"{arch} f32: {f32}\n{arch} f16: {f16}")
    assert f32.max_abs <= 1e-3 and f32.argmax_agree == 1.0
    assert f16.max_abs <= 5e-2 and f16.last_argmax_equal


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_quantized_matches_mlx_on_the_same_weights(arch, quant, request, gguf_dir):
    from mlx_eden.backends.mlx.inference import weights_logits
    from mlx_eden.export.probe import compare
    from mlx_eden.export.readback import dequantized_weights

    fused = request.getfixturevalue(f"fused_{arch}")
    report = export(fused, gguf_dir / f"{arch}-{quant}.gguf", quant)
    main = {"q8_0": "q8_0", "q4_k_m": "q4_k"}[quant]
    assert report.types.get(main, 0) >= 10 and not report.fallbacks  # really quantized
    prompts = prompts_of(fused)
    weights = dequantized_weights(report.path, fused)
    got = llama_logits(report.path, prompts)
    d = compare(got, weights_logits(fused, weights, prompts))
    vs_float = compare(got, mlx_logits(fused, prompts))
    print(f"{arch} {quant} ({report.types}) vs MLX on its weights: {d}\n"
          f"  (vs the float model, i.e. quantization error: {vs_float})")
    assert d.rel <= 0.05 and d.argmax_agree >= 0.85
    assert d.rel < vs_float.rel  # the reference really is the de-quantized weights
    # ...and the quantizer itself is bounded against the float model (measured on the tiny
    # models: q8_0 1.5-1.6e-2, q4_k_m 0.12-0.16; a wrong scale or block layout gives ~1).
    assert vs_float.rel <= {"q8_0": 0.03, "q4_k_m": 0.3}[quant]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_llama_cpp_tokenizes_like_hugging_face(arch, request, gguf_dir):
    from mlx_eden.export.llamacpp import LlamaCpp
    from mlx_eden.export.probe import hf_ids

    base = request.getfixturevalue(f"tiny_{arch}")
    path = export(base, gguf_dir / f"tok-{arch}.gguf", "f16").path
    llm = LlamaCpp(path)
    got = [llm.tokenize(t) for t in TEXTS]
    llm.close()
    want = hf_ids(base, TEXTS)
    for text, a, b in zip(TEXTS, got, want, strict=True):
        assert a == b, text
    print(f"{arch}: {sum(map(len, want))} tokens of {len(TEXTS)} texts identical")


def test_metadata_and_padded_vocabulary(tiny_padded_vocab, gguf_dir):
    """576 embedding rows, 512 token ids: rows 512.. are [PADi] UNUSED, and logits still match."""
    import json

    from gguf import GGUFReader, TokenType

    from mlx_eden.export.probe import compare

    path = export(tiny_padded_vocab, gguf_dir / "padded-f32.gguf", "f32").path
    fields = GGUFReader(str(path)).fields
    value = {k: f.contents() for k, f in fields.items() if k != "tokenizer.ggml.merges"}
    config = json.loads((tiny_padded_vocab / "config.json").read_text())
    assert value["general.architecture"] == "qwen2" and value["tokenizer.ggml.pre"] == "qwen2"
    assert value["qwen2.rope.freq_base"] == config["rope_theta"]
    assert value["qwen2.context_length"] == config["max_position_embeddings"]
    assert value["tokenizer.ggml.bos_token_id"] == config["bos_token_id"] == 509
    assert value["tokenizer.ggml.eos_token_id"] == config["eos_token_id"] == 511
    assert value["tokenizer.ggml.padding_token_id"] == 509
    assert value["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in value["tokenizer.chat_template"]
    assert len(fields["tokenizer.ggml.merges"].contents()) > 200
    tokens, types = value["tokenizer.ggml.tokens"], value["tokenizer.ggml.token_type"]
    assert len(tokens) == 576 and tokens[575] == "[PAD575]"
    assert types[575] == TokenType.UNUSED and types[511] == TokenType.CONTROL
    prompts = prompts_of(tiny_padded_vocab)
    d = compare(llama_logits(path, prompts), mlx_logits(tiny_padded_vocab, prompts))
    print(f"padded vocabulary f32: {d}")
    assert d.max_abs <= 1e-3 and d.argmax_agree == 1.0


def test_k_quant_fallback_is_refused_then_reported(tiny_odd_hidden, gguf_dir):
    out = gguf_dir / "odd-q4_k_m.gguf"
    with pytest.raises(UserError, match="q4_k_m cannot be exact for .* tensors") as e:
        export(tiny_odd_hidden, out, "q4_k_m")
    assert "blk.0.attn_q.weight" in str(e.value) and not out.exists()
    report = export(tiny_odd_hidden, out, "q4_k_m", allow_fallback=True)
    from mlx_eden.export.quantize import tensor_types

    actual = tensor_types(out)
    assert "blk.0.ffn_down.weight" not in report.fallbacks  # its rows are 512 long
    k_quants = {"q4_k", "q5_k", "q6_k"}
    for name, said in report.fallbacks.items():  # the type reported is the type stored
        assert said.split()[0] == actual[name] and actual[name] not in k_quants
    assert {t for n, t in actual.items() if n not in report.fallbacks and
            n.endswith("weight") and "norm" not in n} <= k_quants
    print(f"hidden 320, q4_k_m: {len(report.fallbacks)} fallbacks, e.g. "
          f"{next(iter(report.fallbacks.items()))}; types {report.types}")


def test_cli_q4_k_m_with_verify(fused_qwen2, tmp_path):
    out = tmp_path / "m.gguf"
    proc = run_cli("export", "gguf", fused_qwen2, "--quant", "q4_k_m", "--output", out,
                   "--verify", "--reference", "float", check=True)  # (default: trained)
    assert "PASS" in proc.stdout and "mean|Δ|/std" in proc.stdout, proc.stdout
    assert "vs the float model (quantization error): max|Δ|" in proc.stdout
    print(proc.stdout.strip())


def test_refuses_quantized_or_foreign_folders(tiny_qwen2_4bit, tmp_path):
    with pytest.raises(UserError, match="quantized weights"):
        export(tiny_qwen2_4bit, tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def test_sharded_bf16_folder_to_q8_0(tiny_qwen3, lora_qwen3, tmp_path):
    """A bf16, multi-shard fused folder (what a real Qwen fuse writes): read through gguf-py's
    safetensors reader, quantized from a bf16 intermediate, verified in llama.cpp."""
    from mlx_eden.export.fuse import fuse
    from mlx_eden.export.verify import verify_gguf

    fused = fuse(str(tiny_qwen3), lora_qwen3, tmp_path / "fused", dtype="bf16",
                 max_shard_gb=0.5 / 1024).output
    assert len(list(fused.glob("model-*.safetensors"))) > 1
    from mlx_eden.export.to_gguf import intermediate_type

    assert intermediate_type(fused) == "bf16"
    report = export(fused, tmp_path / "m.gguf", "q8_0")
    v, = verify_gguf(report.path, fused, "q8_0")  # the file-reading check (reference float)
    print(*v.lines(), sep="\n")
    assert v.passed and v.delta.rel <= 0.05 and v.delta.argmax_agree >= 0.85
