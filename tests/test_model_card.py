"""Model cards: every export (fuse folder, PEFT folder, GGUF, GGUF LoRA, Modelfile) gets a
README.md whose Hub front matter parses as YAML and whose data section lists the SHA-256 and row
counts of the files the adapter was trained on; an adapter outside a run says "unknown"."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, run_cli
from .test_trainer import DEMO, sets

DATA = [f"data/samples/chat/{s}.jsonl" for s in ("train", "valid", "test")]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, tiny_qwen2):
    out = tmp_path_factory.mktemp("carded") / "run"
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "model.dtype": "float32", "train.max_steps": 3, "eval.after_train": "true",
        "eval.suites": "[{name: heldout, kind: loss, split: test}]",
        "eval.gates": "{heldout.perplexity: {max: 1000000}}"}), "--output", out,
        "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    assert (out / "eval" / "summary.json").is_file()
    return out


def parse(card: Path) -> tuple[dict, str]:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n"), text[:80]
    _, meta, body = text.split("---", 2)
    return yaml.safe_load(meta), body


def assert_data_section(body: str) -> None:
    for name in DATA:
        raw = (ROOT / name).read_bytes()
        rows = sum(1 for line in raw.splitlines() if line.strip())
        assert f"| {name} | {rows} | `{hashlib.sha256(raw).hexdigest()}` |" in body, name


def test_peft_card_lists_checksums_eval_and_gates(evaluated_run, tmp_path):
    out = tmp_path / "peft"
    run_cli("export", "peft", evaluated_run / "adapter", "-o", out, check=True)
    meta, body = parse(out / "README.md")
    assert meta["library_name"] == "peft" and "mlx-eden" in meta["tags"]
    assert "base_model" not in meta  # a local folder is no Hub id
    assert_data_section(body)
    assert "| heldout | perplexity |" in body and "| heldout.perplexity |" in body
    assert "All gates passed: yes." in body
    assert "- name: tiny-demo" in body and "rank: 16, alpha: 32.0" in body
    assert "Samples used:" in body and "mlx-lm" in body


def test_fuse_gguf_and_modelfile_cards_trace_back_to_the_run(evaluated_run, tiny_qwen2,
                                                             tmp_path):
    fused, gguf, modelfile = tmp_path / "fused", tmp_path / "m.gguf", tmp_path / "Modelfile"
    run_cli("fuse", "--model", tiny_qwen2, "--adapter", evaluated_run / "adapter", "-o", fused,
            check=True)
    run_cli("export", "gguf", fused, "-o", gguf, "--quant", "f32", check=True)
    run_cli("export", "ollama", gguf, "-o", modelfile, check=True)
    run_cli("export", "gguf-lora", evaluated_run / "adapter", "--model", tiny_qwen2,
            "-o", tmp_path / "lora.gguf", check=True)
    cards = [fused / "README.md", tmp_path / "m.gguf.README.md", tmp_path / "Modelfile.README.md",
             tmp_path / "lora.gguf.README.md"]
    libraries = ["transformers", "gguf", "gguf", "gguf"]
    for card, library in zip(cards, libraries, strict=True):
        meta, body = parse(card)
        assert meta["library_name"] == library, card
        assert_data_section(body)
    assert "ollama" in parse(cards[2])[0]["tags"] and "lora" in parse(cards[3])[0]["tags"]


def test_card_of_an_adapter_outside_a_run_says_unknown(lora_qwen2, tiny_qwen2, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_qwen2, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    out = tmp_path / "peft"
    run_cli("export", "peft", lora_qwen2, "-o", out, "--model", base, check=True)
    meta, body = parse(out / "README.md")
    assert meta["license"] == "apache-2.0" and "- license: apache-2.0" in body
    assert "## Training data\nunknown" in body and "- name: unknown" in body


def test_card_without_license_points_at_the_base(lora_qwen2, tiny_qwen2, tmp_path):
    out = tmp_path / "peft"
    run_cli("export", "peft", lora_qwen2, "-o", out, "--model", "Qwen/Qwen2.5-0.5B", check=True,
            env={"HF_HUB_CACHE": str(tmp_path / "empty-hub"), "HF_HUB_OFFLINE": "1"})
    meta, body = parse(out / "README.md")
    assert "license" not in meta and "- license: see the base model" in body
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B"


def test_hub_base_license_comes_from_the_hub_cache(lora_qwen2, tiny_qwen2, tmp_path):
    # the Hugging Face cache's layout (models--org--name/refs, snapshots): no download
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    shutil.copy(tiny_qwen2 / "config.json", snap / "config.json")
    (snap / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    out = tmp_path / "peft"
    run_cli("export", "peft", lora_qwen2, "-o", out, "--model", "Qwen/Qwen2.5-0.5B", check=True,
            env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    meta, _ = parse(out / "README.md")
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B" and meta["license"] == "apache-2.0"
