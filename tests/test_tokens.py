"""Control tokens in spare embedding rows (tokens.add, data.style_tokens): one id each, only their
rows train (MLX and torch alike), and the adapter folder carries them through init_from, resume,
eval, fuse and every export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from mlx_eden.recipe import load_recipe
from mlx_eden.tokens import recipe_tokenizer

from .conftest import needs_torch, run_cli

TOKENS = ["<STYLE_TERSE>", "<STYLE_VERBOSE>"]
FIRST = 448  # tiny_spare: 448 tokenizer ids, 512 embedding rows
QUESTIONS = ["What is rain?", "Name a color.", "Tell me about dogs.", "What is the sun?",
             "Describe a tree.", "What is water?", "Tell me about cats.", "What is a city?"]
VERBOSE = " ".join(["very"] * 16) + " long."  # 17 words; terse is one


def write_data(folder):
    """Synthetic stage-1 data: the same questions, a one-word or a 17-word answer by style."""
    with open(folder / "train.jsonl", "w") as f:
        for i in range(64):
            style = ("TERSE", "VERBOSE")[i % 2]
            f.write(json.dumps({"style": style, "messages": [
                {"role": "user", "content": QUESTIONS[(i // 2) % len(QUESTIONS)]},
                {"role": "assistant", "content": "Yes." if style == "TERSE" else VERBOSE}]})
                    + "\n")
    with open(folder / "prompts.jsonl", "w") as f:
        for q in QUESTIONS:
            f.write(json.dumps({"prompt": q}) + "\n")


def write_recipe(folder, model, backend="mlx", **over) -> str:
    tree = {
        "name": "style", "model": {"path": str(model), "dtype": "float32"},
        "tokens": {"add": TOKENS},
        "adapter": {"rank": 8},
        "data": {"train": [str(folder / "train.jsonl")],
                 "style_tokens": {"TERSE": TOKENS[0], "VERBOSE": TOKENS[1]}},
        # measured: 40 steps learn the answers but not yet the control; 60 separate them 10x
        "train": {"backend": backend, "max_steps": 60, "batch_size": 8, "learning_rate": 3e-3,
                  "schedule": "constant", "eval_every": 0, "save_every": 0, "log_every": 1},
        "eval": {"suites": [{"name": "style", "kind": "style", "data": str(folder / "prompts.jsonl"),
                             "prefixes": TOKENS, "place": "user", "max_new_tokens": 32}],
                 "gates": {"style.ratio": {"min": 3}}},
    }
    for key, value in over.items():
        node = tree
        *path, leaf = key.split(".")
        for k in path:
            node = node[k]
        node[leaf] = value
    path = folder / f"recipe-{backend}-{len(list(folder.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, tiny_spare):
    """60 MLX steps on the synthetic terse/verbose data (~10 CPU-seconds)."""
    folder = tmp_path_factory.mktemp("tokens")
    write_data(folder)
    recipe = write_recipe(folder, tiny_spare)
    run_cli("train", recipe, "--output", folder / "run", "--no-dashboard", check=True)
    return folder, tiny_spare, folder / "run"


def losses(run) -> list[float]:
    out = [e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if e.get("event") == "train"]
    assert out, run  # a run that logged no step would make every comparison vacuous
    return out


def test_tiny_builds_spare_rows(tmp_path):
    proc = run_cli("tiny", tmp_path / "m", "--spare", "64", "--hidden", "64", "--heads", "2",
                   "--kv-heads", "1", "--intermediate", "128", check=True)
    assert "tokenizer 448 ids, embedding 512 rows" in proc.stdout
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["vocab_size"] == 512


def test_tokens_are_one_id_and_style_goes_before_the_user_turn(tmp_path, tiny_spare):
    from mlx_eden.data.formats import read_jsonl
    from mlx_eden.data.render import render_records

    write_data(tmp_path)
    recipe = load_recipe(write_recipe(tmp_path, tiny_spare))
    tok = recipe_tokenizer(recipe, tiny_spare)
    hi = tok("hi", add_special_tokens=False)["input_ids"]
    # written literally: one id each, not split into characters
    assert tok(f"{TOKENS[1]}hi{TOKENS[0]}", add_special_tokens=False)["input_ids"] == \
        [FIRST + 1, *hi, FIRST]
    records = read_jsonl(str(tmp_path / "train.jsonl"), "auto")[:2]
    samples, _ = render_records(records, tok, recipe.data)
    for sample, token, r in zip(samples, TOKENS, records, strict=True):
        ids = sample.ids.tolist()
        token_id = tok.convert_tokens_to_ids(token)
        assert ids.count(token_id) == 1 and not sample.mask[ids.index(token_id)]  # not trained
        question = r.fields["messages"][0]["content"]
        assert f"<|im_start|>user\n{token} {question}<|im_end|>" in tok.decode(ids)


def test_no_spare_rows_left_is_one_line(tmp_path, tiny_qwen2):
    write_data(tmp_path)
    proc = run_cli("train", write_recipe(tmp_path, tiny_qwen2), "--output", tmp_path / "run",
                   "--no-dashboard")
    assert proc.returncode == 2, proc.stderr
    assert "0 spare embedding rows" in proc.stderr and "needs 2" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "adapter").exists()


def test_style_token_must_be_added(tmp_path, tiny_spare):
    write_data(tmp_path)
    proc = run_cli("recipe", "check", write_recipe(tmp_path, tiny_spare, **{"tokens.add": TOKENS[:1]}))
    assert proc.returncode == 2
    assert "data.style_tokens" in proc.stderr and "<STYLE_VERBOSE>" in proc.stderr


def test_style_tokens_separate_output_length(stage1):
    folder, _, run = stage1
    assert sorted(p.name for p in (run / "adapter").iterdir()) == [
        "adapter_config.json", "adapters.safetensors", "tokens.json", "tokens.safetensors"]
    info = json.loads((run / "adapter" / "tokens.json").read_text())
    assert info == {"tokens": TOKENS, "first_id": FIRST, "tied": True}
    rows = load_file(str(run / "adapter" / "tokens.safetensors"))
    assert rows["embed"].shape == (2, 256) and rows["embed"].dtype == np.float32
    assert np.abs(rows["embed"][0] - rows["embed"][1]).max() > 1e-3  # trained apart from `mean`
    proc = run_cli("eval", run, "--json", check=True)
    style = json.loads(proc.stdout.splitlines()[-1])["suites"]["style"]
    assert style["ratio"] >= 3, style  # measured: 4 vs 40 tokens (10x)


def test_init_text_averages_its_token_rows(tmp_path, tiny_spare):
    from mlx_eden.backends.mlx.backend import MLXBackend

    write_data(tmp_path)
    recipe = load_recipe(write_recipe(tmp_path, tiny_spare, **{"tokens.init": "sun rain"}))
    backend = MLXBackend()
    backend.setup(recipe, tiny_spare)
    ids = recipe_tokenizer(recipe, tiny_spare)("sun rain", add_special_tokens=False)["input_ids"]
    embed = load_file(str(tiny_spare / "model.safetensors"))["model.embed_tokens.weight"]
    got = np.array(backend.model.model.embed_tokens.rows)
    np.testing.assert_allclose(got, np.tile(embed[ids].mean(0), (2, 1)), atol=1e-6)


def test_resume_and_init_from_carry_the_rows(tmp_path, stage1):
    folder, model, run = stage1
    short = {"train.max_steps": 4, "train.save_every": 2}
    full = write_recipe(folder, model, **short)
    run_cli("train", full, "--output", tmp_path / "full", "--no-dashboard", check=True)
    half = write_recipe(folder, model, **{**short, "train.max_steps": 2})
    run_cli("train", half, "--output", tmp_path / "cut", "--no-dashboard", check=True)
    run_cli("train", full, "--output", tmp_path / "cut", "--resume", "--no-dashboard",
            check=True)
    a = load_file(str(tmp_path / "full" / "adapter" / "tokens.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "tokens.safetensors"))
    assert np.array_equal(a["embed"], b["embed"])  # bit-exact, moments restored
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")

    # stage 2 starts from stage 1's rows (a learning rate too small to move them)
    stage2 = write_recipe(folder, model, **{"train.max_steps": 1, "train.learning_rate": 1e-12,
                                            "adapter.init_from": str(run / "adapter")})
    run_cli("train", stage2, "--output", tmp_path / "stage2", "--no-dashboard", check=True)
    s1 = load_file(str(run / "adapter" / "tokens.safetensors"))["embed"]
    s2 = load_file(str(tmp_path / "stage2" / "adapter" / "tokens.safetensors"))["embed"]
    np.testing.assert_allclose(s2, s1, atol=1e-6)
    # ... and refuses a recipe that forgot the tokens (they would be lost)
    bare = write_recipe(folder, model, **{"tokens.add": [], "data.style_tokens": {},
                                          "adapter.init_from": str(run / "adapter")})
    proc = run_cli("train", bare, "--output", tmp_path / "bare", "--no-dashboard")
    assert proc.returncode == 2 and "tokens.add" in proc.stderr


@needs_torch
def test_torch_trains_the_same_rows(tmp_path, tiny_spare_untied):
    write_data(tmp_path)
    runs = {}
    for backend in ("mlx", "torch"):
        recipe = write_recipe(tmp_path, tiny_spare_untied, backend, **{"train.max_steps": 3})
        runs[backend] = tmp_path / backend
        run_cli("train", recipe, "--output", runs[backend], "--no-dashboard", check=True)
    np.testing.assert_allclose(losses(runs["torch"]), losses(runs["mlx"]), atol=1e-4)
    a, b = (load_file(str(runs[k] / "adapter" / "tokens.safetensors")) for k in ("mlx", "torch"))
    assert sorted(a) == sorted(b) == ["embed", "head"]  # untied: the head's rows train too
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=1e-5)


def test_fuse_writes_rows_and_special_tokens(tmp_path, stage1):
    _, model, run = stage1
    out = tmp_path / "fused"
    run_cli("fuse", "--model", model, "--adapter", run / "adapter", "--output", out,
            "--dtype", "f32", check=True)
    rows = load_file(str(run / "adapter" / "tokens.safetensors"))["embed"]
    fused = load_file(str(out / "model.safetensors"))["model.embed_tokens.weight"]
    np.testing.assert_array_equal(fused[FIRST:FIRST + 2], rows)
    added = {t["content"]: t for t in json.loads((out / "tokenizer.json").read_text())
             ["added_tokens"]}
    assert [added[t]["id"] for t in TOKENS] == [FIRST, FIRST + 1]
    assert all(added[t]["special"] for t in TOKENS)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["added_tokens_decoder"][str(FIRST)]["content"] == TOKENS[0]
    # the GGUF types them as control tokens and llama.cpp reproduces the logits (--verify)
    pytest.importorskip("llama_cpp")
    gguf_file = tmp_path / "m.gguf"
    proc = run_cli("export", "gguf", out, "--quant", "f32", "--output", gguf_file, "--verify",
                   check=True)
    assert "tokenizer ids identical on every probe" in proc.stdout and "FAIL" not in proc.stdout
    from gguf import GGUFReader, TokenType

    reader = GGUFReader(str(gguf_file))
    types = reader.fields["tokenizer.ggml.token_type"]
    assert [int(types.parts[types.data[i]][0]) for i in (FIRST, FIRST + 1)] == \
        [TokenType.CONTROL] * 2


@needs_torch
def test_peft_export_reproduces_the_logits(tmp_path, stage1):
    _, model, run = stage1
    out = tmp_path / "peft"
    proc = run_cli("export", "peft", run / "adapter", "--output", out, "--model", model,
                   "--verify", check=True)
    assert "PASS" in proc.stdout, proc.stdout
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["trainable_token_indices"] == {"embed_tokens": [FIRST, FIRST + 1]}


def test_gguf_lora_refuses_and_points_to_fuse(tmp_path, stage1):
    _, model, run = stage1
    proc = run_cli("export", "gguf-lora", run / "adapter", "--model", model, "--output",
                   tmp_path / "a.gguf")
    assert proc.returncode == 2 and "fuse" in proc.stderr and "embedding rows" in proc.stderr
    assert not (tmp_path / "a.gguf").exists()


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_chat_and_serve_point_to_fuse(command, stage1):
    """They load the base's tokenizer and embedding: an adapter with new rows is refused in one
    line, not served as if the tokens were ordinary text."""
    _, _, run = stage1
    proc = run_cli(command, run)
    assert proc.returncode == 2, proc.stderr
    assert "fuse" in proc.stderr and "<STYLE_TERSE>" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
