"""`eden-mlx plan` beside the max_seq_length worst case: the peak for the batches the recipe's own
data produces (tokenized with the model's template, truncated and packed as training will)."""

from __future__ import annotations

import json

from mlx_eden.data.batching import PAD_MULTIPLE
from mlx_eden.data.formats import read_jsonl
from mlx_eden.data.longest import data_shapes
from mlx_eden.data.render import load_tokenizer, render_records
from mlx_eden.memory.devices import get_device
from mlx_eden.memory.planner import data_peak, make_plan
from mlx_eden.memory.shapes import load_config, shape_from_config
from mlx_eden.recipe import load_recipe

from .conftest import run_cli


def _chat(path, answers):
    rows = [{"messages": [{"role": "user", "content": "Say it."},
                          {"role": "assistant", "content": a}]} for a in answers]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(model, data, *more):
    return load_recipe(None, [f"model.path={model}", f"data.train={data}",
                              "data.max_seq_length=512", "train.batch_size=2", *more])


def _plan(recipe):
    shape = shape_from_config(load_config(recipe.model.path)[0])
    return make_plan(recipe, shape, get_device("cpu-64gb"))


def test_the_longest_row_decides_the_data_peak(tiny_qwen2, tmp_path):
    data = _chat(tmp_path / "d.jsonl", ["short"] * 5 + ["a longer answer " * 6])
    recipe = _recipe(tiny_qwen2, data)
    shapes, why = data_shapes(recipe)
    assert shapes is not None, why
    # Independently: the longest rendered sample, in positions (n - 1), rounded up to 8.
    samples, _ = render_records(read_jsonl(data), load_tokenizer(tiny_qwen2), recipe.data)
    longest = max(len(s.ids) for s in samples)
    assert shapes.longest_sample == longest < 512
    assert shapes.widest == -(-(longest - 1) // PAD_MULTIPLE) * PAD_MULTIPLE
    plan = _plan(recipe)
    small = data_peak(plan, shapes.shapes)
    assert small.peak < plan.predicted_peak_bytes  # every row 512 long costs more
    # A longer row in the data raises the data's peak (the feature reads the data, not a constant).
    longer = _recipe(tiny_qwen2, _chat(tmp_path / "e.jsonl", ["short"] * 5 + ["word " * 200]))
    bigger = data_peak(plan, data_shapes(longer)[0].shapes)
    assert bigger.width > small.width and bigger.peak > small.peak


def test_truncation_caps_the_data_at_max_seq_length(tiny_qwen2, tmp_path):
    data = _chat(tmp_path / "d.jsonl", ["word " * 400, "hi"])
    recipe = _recipe(tiny_qwen2, data, "data.max_seq_length=128", "data.packing=true")
    shapes, _ = data_shapes(recipe)
    assert shapes.longest_sample <= 128 and shapes.widest <= 128
    plan = _plan(recipe)
    assert data_peak(plan, shapes.shapes).peak <= plan.predicted_peak_bytes


def test_plan_cli_reports_the_data_peak_or_why_not(tiny_qwen2, tmp_path):
    data = _chat(tmp_path / "d.jsonl", ["short"] * 3 + ["a longer answer " * 6])
    sets = ["--set", f"model.path={tiny_qwen2}", "--set", f"data.train={data}",
            "--set", "data.max_seq_length=512", "--device", "cpu-64gb"]
    out = run_cli("plan", _recipe_file(tmp_path), *sets, "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["data_peak"]
    assert got["computed"] and got["samples"] == 4
    assert got["predicted_peak_bytes"] < json.loads(out.stdout)["predicted_peak_bytes"]
    text = run_cli("plan", _recipe_file(tmp_path), *sets)
    assert "with your data (4 samples" in text.stdout and "max_seq_length" in text.stdout
    missing, why = data_shapes(_recipe(tiny_qwen2, tmp_path / "missing.jsonl"))
    assert missing is None and "missing.jsonl" in why


def _recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  batch_size: 2\n")
    return path
