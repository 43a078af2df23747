"""llama.cpp LoRA adapters and Ollama Modelfiles, checked in llama.cpp itself."""

from __future__ import annotations

import pytest

from mlx_eden.errors import UserError

from .conftest import run_cli

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytestmark = pytest.mark.gguf


@pytest.fixture(scope="session")
def base_ggufs(tiny_qwen2, tiny_qwen3, tmp_path_factory):
    from mlx_eden.export.to_gguf import export_gguf

    out = tmp_path_factory.mktemp("base-gguf")
    return {arch: export_gguf(base, out / f"{arch}-f32.gguf", "f32").path
            for arch, base in (("qwen2", tiny_qwen2), ("qwen3", tiny_qwen3))}


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_lora_gguf_in_llama_cpp_matches_mlx(arch, request, base_ggufs, tmp_path):
    """qwen2: LoRA on every projection of the tied model; qwen3: rsLoRA on the attention of the
    last layer of the untied model (alpha must carry alpha/sqrt(r) exactly)."""
    from mlx_eden.export.gguf_lora import export_gguf_lora
    from mlx_eden.export.verify import verify_gguf_lora

    base, adapter = request.getfixturevalue(f"tiny_{arch}"), request.getfixturevalue(f"lora_{arch}")
    info = export_gguf_lora(adapter, base, tmp_path / "lora.gguf")
    v = verify_gguf_lora(tmp_path / "lora.gguf", base_ggufs[arch], base, adapter)
    print(f"{arch} ({info}):", *v.lines(), sep="\n")
    assert v.delta.max_abs <= 1e-3 and v.delta.argmax_agree == 1.0
    assert v.passed  # includes: llama.cpp's logits with the adapter differ from without it
    effect = v.notes[0]
    assert "without the adapter" in effect


def test_cli_gguf_lora_and_dora_refusal(tiny_qwen2, lora_qwen2, dora_qwen2, tmp_path):
    from gguf import GGUFReader

    proc = run_cli("export", "gguf-lora", lora_qwen2, "--model", tiny_qwen2, "--output",
                   tmp_path / "a.gguf", check=True)
    assert "14 modules, r=8, alpha=16" in proc.stdout, proc.stdout
    reader = GGUFReader(str(tmp_path / "a.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}  # ggml order
    assert shapes["blk.0.attn_q.weight.lora_a"] == (256, 8)  # ne = (in, r)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (8, 128)  # ne = (r, out)
    from mlx_eden.export.gguf_lora import export_gguf_lora

    with pytest.raises(UserError, match="llama.cpp has no DoRA"):
        export_gguf_lora(dora_qwen2, tiny_qwen2, tmp_path / "d.gguf")
    assert not (tmp_path / "d.gguf").exists()


def test_ollama_modelfile(tiny_qwen2, base_ggufs, tmp_path):
    from mlx_eden.export.ollama import export_ollama
    from mlx_eden.export.ollama_templates import QWEN25
    from mlx_eden.export.verify import verify_ollama

    modelfile = tmp_path / "deploy" / "Modelfile"
    text = export_ollama(base_ggufs["qwen2"], modelfile)
    lines = text.splitlines()
    source = lines[0].removeprefix("FROM ")
    assert (modelfile.parent / source).resolve() == base_ggufs["qwen2"].resolve()
    assert f'TEMPLATE """{QWEN25}"""' in text  # the tiny template is Qwen2-style ChatML
    assert 'SYSTEM """You are a helpful assistant."""' in text  # the template's own default
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    v = verify_ollama(modelfile, base_ggufs["qwen2"])
    print(*v.lines(), sep="\n")
    assert v.passed
