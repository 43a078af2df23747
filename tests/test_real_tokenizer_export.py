"""GGUF and Ollama exports of tiny models around the real Qwen2.5/Qwen3 tokenizers: llama.cpp
tokenizes like transformers (NFD text reported, not failed), logits match, and the Modelfile
carries the Go template, default system message and stops of that template."""

from __future__ import annotations

import re

import pytest

from mlx_eden.data.render import template_args
from mlx_eden.export.ollama_templates import go_template

from .test_chat_fidelity import KOREAN


@pytest.fixture(scope="module", params=["qwen25", "qwen3"])
def real(request, tmp_path_factory):
    """(model folder, its tokenizer, its f16 GGUF)."""
    from mlx_eden.export.to_gguf import export_gguf

    model = request.getfixturevalue(f"tiny_real_{request.param}")
    tok = request.getfixturevalue(f"{request.param}_tok")
    out = tmp_path_factory.mktemp("real-gguf") / f"{request.param}-f16.gguf"
    return model, tok, export_gguf(model, out, "f16").path


def test_gguf_tokenizer_and_logits_match(real):
    from mlx_eden.export.llamacpp import LlamaCpp
    from mlx_eden.export.probe import NFD_TEXT, hf_ids
    from mlx_eden.export.verify import verify_gguf

    model, tok, gguf = real
    chats = [tok.apply_chat_template(KOREAN[:n], tokenize=False) for n in (2, 4)]
    llm = LlamaCpp(gguf)
    got = [llm.tokenize(t) for t in chats]
    nfd = len(llm.tokenize(NFD_TEXT))
    llm.close()
    assert got == hf_ids(model, chats)
    v, = verify_gguf(gguf, model, "f16")  # reference float: the file-reading check alone
    print(*v.lines(), sep="\n")
    assert v.passed and not v.tokenizer_mismatches
    note = next(n for n in v.notes if n.startswith("NFD text"))
    assert f"{nfd} ids here vs {len(hf_ids(model, [NFD_TEXT])[0])} in transformers" in note
    assert nfd > len(hf_ids(model, [NFD_TEXT])[0])  # llama.cpp does not normalize


def test_modelfile_for_the_real_template(real, tmp_path):
    from mlx_eden.export.ollama import export_ollama
    from mlx_eden.export.verify import verify_ollama

    _, tok, gguf = real
    text = export_ollama(gguf, tmp_path / "Modelfile")
    template = re.search(r'TEMPLATE """(.*?)"""\n', text, re.S).group(1)
    assert template == go_template(tok.chat_template, template_args(tok.chat_template, {}))
    systems = re.findall(r'SYSTEM """(.*?)"""', text, re.S)
    if "enable_thinking" in tok.chat_template:
        assert systems == []  # Qwen3's template has no default system message
    else:
        assert systems == ["You are Qwen, created by Alibaba Cloud. You are a helpful assistant."]
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert verify_ollama(tmp_path / "Modelfile", gguf).passed


def test_cli_template_args_reach_the_modelfile(real, tmp_path):
    from mlx_eden.export.ollama_templates import THINK_OFF_BY_DEFAULT, THINK_ON_BY_DEFAULT

    from .conftest import run_cli

    _, tok, gguf = real
    out = tmp_path / "Modelfile"
    run_cli("export", "ollama", gguf, "--output", out, "--template-args",
            "{enable_thinking: true}", check=True)
    text = out.read_text()
    qwen3 = "enable_thinking" in tok.chat_template
    assert (THINK_ON_BY_DEFAULT in text) == qwen3 and THINK_OFF_BY_DEFAULT not in text
    bad = run_cli("export", "ollama", gguf, "--output", tmp_path / "M2", "--template-args", "[1]")
    assert bad.returncode == 2 and not (tmp_path / "M2").exists()
    assert bad.stderr.strip().startswith("error: --template-args must be a mapping")
