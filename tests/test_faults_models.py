"""Fault injection, inputs: damaged model folders (cut safetensors, corrupt or non-object
config.json, no tokenizer), damaged data files (bad UTF-8, absurd nesting) and out-of-range
command options. Each is one line naming the file or option, exit 2, no traceback."""

from __future__ import annotations

import shutil

import pytest

from .conftest import SAMPLES, run_cli
from .test_faults_recipe import assert_one_line_error
from .test_trainer import DEMO, sets


def damaged_copy(model, tmp_path, name, damage):
    out = tmp_path / name
    shutil.copytree(model, out)
    damage(out)
    return out


def cut(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


DAMAGE = {
    "cut-weights": (lambda d: cut(d / "model.safetensors"), "model.safetensors",
                    "damaged safetensors file: it is cut short"),
    "empty-weights": (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors",
                      "damaged safetensors file"),
    "corrupt-config": (lambda d: (d / "config.json").write_text('{"hidden_size": 6'),
                       "config.json", "config.json is not valid JSON"),
    "list-config": (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json",
                    "config.json must be a JSON object, got list"),
    "wrong-hidden": (lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text().replace('"hidden_size": 256', '"hidden_size": 384')),
        "config.json", "config.json says hidden_size 384, the weights have 256"),
    "no-tokenizer": (lambda d: [(d / n).unlink() for n in ("tokenizer.json", "vocab.json",
                                                            "merges.txt")], "",
                     "the model folder has no tokenizer files"),
}


@pytest.mark.parametrize("backend", ["mlx", "torch"])
@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_model_folder_is_named_in_one_line(tmp_path, tiny_qwen2, name, backend):
    damage, file, message = DAMAGE[name]
    model = damaged_copy(tiny_qwen2, tmp_path, name, damage)
    proc = run_cli("train", DEMO, *sets(model, **{"train.max_steps": 1,
                                                  "train.backend": backend}),
                   "--output", tmp_path / "run", "--no-dashboard")
    last = assert_one_line_error(proc)
    assert f"{model / file}".rstrip("/") in last and message in last, last
    assert not (tmp_path / "run").exists()  # nothing created for a run that cannot start


def test_init_from_an_adapter_of_another_model_size(tmp_path, tiny_small, lora_qwen2):
    proc = run_cli("train", DEMO, *sets(tiny_small, **{
        "train.max_steps": 1, "adapter.rank": 8, "adapter.alpha": 16,
        "adapter.init_from": lora_qwen2}), "--output", tmp_path / "run", "--no-dashboard")
    last = assert_one_line_error(proc)
    assert "this model needs" in last and "another model size" in last, last


@pytest.mark.parametrize("content,message", [
    (b'{"text": "caf\xe9"}\n', "not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", "JSON nested too deeply"),
])
def test_damaged_data_file_names_the_line(tmp_path, tiny_qwen2, content, message):
    data = tmp_path / "train.jsonl"
    data.write_bytes((SAMPLES / "chat" / "train.jsonl").read_bytes()[:2000].rsplit(b"\n", 1)[0]
                     + b"\n" + content)
    lines = data.read_bytes().count(b"\n")
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{"data.train": data}), "--output",
                   tmp_path / "run", "--no-dashboard")
    last = assert_one_line_error(proc)
    assert f"{data}:{lines}: {message}" in last, last


def test_out_of_range_options_are_refused(tmp_path, tiny_qwen2):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  path: {tiny_qwen2}\n")
    cases = [(["plan", recipe, "--budget-gb", "nan"], "--budget-gb"),
             (["data", "check", SAMPLES / "chat" / "train.jsonl", "--recipe", recipe,
               "--example", "-50"], "--example"),
             (["eval", tmp_path, "--limit", "0"], "--limit"),
             (["eval", tmp_path, "--limit", "-1"], "--limit"),
             (["eval", tmp_path, "--max-new-tokens", "0"], "--max-new-tokens")]
    for args, option in cases:
        last = assert_one_line_error(run_cli(*args))
        assert option in last, (args, last)


def test_a_validation_split_dropped_whole_is_an_error_not_silence(tmp_path, tiny_qwen2):
    short = tmp_path / "train.jsonl"
    short.write_text('{"text": "a b c"}\n' * 8)
    valid = tmp_path / "valid.jsonl"
    valid.write_text('{"text": "' + "word " * 400 + '"}\n')
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "data.train": short, "data.valid": valid, "data.test": "[]", "data.max_seq_length": 64,
        "data.truncation": "drop", "train.max_steps": 1}), "--output", tmp_path / "run",
        "--no-dashboard")
    last = assert_one_line_error(proc)
    assert "every validation sample (1) was dropped" in last and "data.max_seq_length" in last
