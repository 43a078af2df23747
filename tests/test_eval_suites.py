"""Evaluation suites end to end on the tiny model: every kind through the real CLI, baselines,
gates (exit 0 / 4), bad input (exit 2 with file:line), and the after-train verdict."""

import json

import pytest

from .conftest import SAMPLES, run_cli
from .eval_fixtures import loud_lora  # noqa: F401

EVAL = SAMPLES / "eval"

SUITES = f"""
    - {{name: ppl, kind: loss, data: {SAMPLES}/chat/test.jsonl, limit: 8}}
    - {{name: cls, kind: classify, data: {SAMPLES}/classifier/test.jsonl, limit: 9,
       balanced: true, labels: [positive, negative, neutral], max_new_tokens: 4}}
    - name: quality
      kind: generate
      data: {EVAL}/prompts.jsonl
      max_new_tokens: 12
      checks: {{min_chars: 5, max_repeat_ngram: 3, ngram: 2}}
    - {{name: code, kind: validate, data: {EVAL}/code.jsonl, max_new_tokens: 12,
       command: [python3, -m, py_compile, "{{file}}"], filename: answer.py}}
    - {{name: style, kind: style, data: {EVAL}/style.jsonl, max_new_tokens: 8,
       prefixes: ["<STYLE_TERSE>", "<STYLE_VERBOSE>"]}}
    - {{name: mc, kind: choice, data: {EVAL}/choice.jsonl}}
    - {{name: speed, kind: latency, data: {EVAL}/style.jsonl, max_new_tokens: 4, limit: 2}}
"""


def recipe_file(tmp_path, model, gates: str, suites: str = SUITES, name="r.yaml",
                backend="mlx", extra="") -> str:
    path = tmp_path / name
    path.write_text(f"""name: eval-test
model: {{path: {model}, dtype: float32}}
adapter: {{rank: 8, alpha: 16}}
data: {{train: {SAMPLES}/chat/train.jsonl, valid: {SAMPLES}/chat/valid.jsonl,
       test: {SAMPLES}/chat/test.jsonl, max_seq_length: 512}}
train: {{backend: {backend}, batch_size: 4, learning_rate: 2.0e-3}}
{extra}
eval:
  suites:{suites}
  gates:{gates}
""")
    return str(path)


PASSING = """
    mc.accuracy: {max_drop: 1.0}
    ppl.loss: {max: 100}
    cls.n: {min: 9}
"""


def eval_json(args, cache, expect=0):
    proc = run_cli("eval", *args, "--json", env={"XDG_CACHE_HOME": str(cache)})
    assert proc.returncode == expect, proc.stderr
    return json.loads(proc.stdout)


def test_every_kind_with_base_baseline_and_gates(tmp_path, tiny_qwen2, loud_lora):  # noqa: F811
    cache, out = tmp_path / "cache", tmp_path / "out"
    recipe = recipe_file(tmp_path, tiny_qwen2, PASSING)
    args = ["--model", tiny_qwen2, "--adapter", loud_lora, "--recipe", recipe, "-o", out]
    first = eval_json([*args, "--baseline", "base"], cache)
    kinds = {"ppl": "perplexity", "cls": "balanced_macro_f1", "quality": "success_rate",
             "code": "pass_rate", "style": "ratio", "mc": "accuracy_norm",
             "speed": "latency_p90_s"}
    for suite, metric in kinds.items():
        assert metric in first["suites"][suite] and metric in first["baseline"][suite]
        assert (out / "eval" / f"{suite}.json").is_file()
    assert first["passed"] and len(first["gates"]) == 3
    # the adapter moves the model: its loss differs from the base model's
    assert first["suites"]["ppl"]["loss"] != first["baseline"]["ppl"]["loss"]
    assert first["suites"]["ppl"]["tokens"] == first["baseline"]["ppl"]["tokens"]
    assert len(list(cache.rglob("*.json"))) == len(kinds)  # base results cached per suite

    # a failing gate exits 4 and says why; the cached base gives the same baseline
    failing = recipe_file(tmp_path, tiny_qwen2, PASSING + "    ppl.perplexity: {max: 1.5}\n",
                          name="fail.yaml")
    second = eval_json(["--model", tiny_qwen2, "--adapter", loud_lora, "--recipe", failing,
                        "-o", tmp_path / "out2", "--baseline", "base"], cache, expect=4)
    assert not second["passed"] and second["baseline"] == first["baseline"]
    bad = [g for g in second["gates"] if not g["passed"]]
    assert [g["metric"] for g in bad] == ["ppl.perplexity"] and "> max 1.5" in bad[0]["reasons"][0]
    # determinism: the same greedy answers twice
    a = json.loads((out / "eval" / "quality.json").read_text())["samples"]
    b = json.loads((tmp_path / "out2" / "eval" / "quality.json").read_text())["samples"]
    assert a == b

    # a saved result file as the baseline (round 2 judged against round 1); table output
    proc = run_cli("eval", "--model", tiny_qwen2, "--recipe", recipe, "-o", tmp_path / "out3",
                   "--suite", "mc", "--suite", "ppl", "--baseline", out / "eval" / "summary.json")
    assert proc.returncode == 0, proc.stderr
    for word in ("suite", "metric", "baseline", "delta", "gate", "verdict", "PASS"):
        assert word in proc.stdout
    summary = json.loads((tmp_path / "out3" / "eval" / "summary.json").read_text())
    assert set(summary["suites"]) == {"mc", "ppl"}
    # no adapter = the base model: equals the base baseline computed above
    assert summary["suites"]["ppl"]["loss"] == pytest.approx(first["baseline"]["ppl"]["loss"],
                                                             rel=1e-5)


def test_max_drop_without_baseline_fails(tmp_path, tiny_qwen2):
    suites = f"\n    - {{name: mc, kind: choice, data: {EVAL}/choice.jsonl}}"
    recipe = recipe_file(tmp_path, tiny_qwen2, "\n    mc.accuracy: {max_drop: 0.02}", suites)
    out = eval_json(["--model", tiny_qwen2, "--recipe", recipe, "-o", tmp_path / "o"],
                    tmp_path / "c", expect=4)
    assert "needs a baseline" in out["gates"][0]["reasons"][0]


def test_bad_suite_data_exits_2_with_file_and_line(tmp_path, tiny_qwen2):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "choices": ["a", "b"], "answer": 0}\n\n'
                   '{"question": "q?", "choices": ["a", "b"], "answer": 5}\n')
    suites = f"\n    - {{name: mc, kind: choice, data: {bad}}}"
    recipe = recipe_file(tmp_path, tiny_qwen2, " {}", suites)
    proc = run_cli("eval", "--model", tiny_qwen2, "--recipe", recipe, "-o", tmp_path / "o")
    assert proc.returncode == 2
    assert f"{bad}:3" in proc.stderr and "answer must be the index" in proc.stderr
    assert "Traceback" not in proc.stderr
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n{"prompt": 3}\n')
    suites = f"\n    - {{name: g, kind: generate, data: {prompts}}}"
    recipe = recipe_file(tmp_path, tiny_qwen2, " {}", suites, name="g.yaml")
    proc = run_cli("eval", "--model", tiny_qwen2, "--recipe", recipe, "-o", tmp_path / "o")
    assert proc.returncode == 2 and f"{prompts}:2" in proc.stderr, proc.stderr


def test_bad_suite_declarations_exit_2(tmp_path, tiny_qwen2):
    suites = f"""
    - {{name: mc, kind: choise, data: {EVAL}/choice.jsonl}}
    - name: q
      kind: generate
      data: {EVAL}/prompts.jsonl
      checks: {{regexp: "x"}}
      command: [true]"""
    gates = "\n    q.succes_rate: {min: 0.9}\n    nope.accuracy: {min: 0.1}"
    recipe = recipe_file(tmp_path, tiny_qwen2, gates, suites)
    proc = run_cli("recipe", "check", recipe)
    assert proc.returncode == 2
    err = proc.stderr
    assert f"{recipe}:10: eval.suites.0.kind: unknown suite kind 'choise'" in err
    assert "did you mean 'choice'" in err
    assert "eval.suites.1.checks.regexp: unknown key (did you mean " in err
    assert f"{recipe}:15: eval.suites.1.command: unknown key" in err  # validate's key
    assert "no metric 'succes_rate' (did you mean success_rate?)" in err
    assert "gate on unknown suite 'nope'" in err


def test_after_train_verdict_in_run_json_and_last_event(tmp_path, tiny_qwen2):
    suites = f"\n    - {{name: mc, kind: choice, data: {EVAL}/choice.jsonl}}"
    recipe = recipe_file(tmp_path, tiny_qwen2, "\n    mc.n: {min: 6}", suites)
    text = open(recipe).read().replace("eval:\n", "eval:\n  after_train: true\n")
    open(recipe, "w").write(text)
    run = tmp_path / "run"
    proc = run_cli("train", recipe, "--output", run, "--no-dashboard", "--set",
                   "train.max_steps=2", "--set", "train.eval_every=2", "--set",
                   "train.eval_batches=1", "--set", "data.max_seq_length=128")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["eval"]["passed"] is True and info["eval"]["suites"]["mc"]["n"] == 6
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "suites" and last["passed"] is True
    assert (run / "eval" / "mc.json").is_file() and "verdict: PASS" in proc.stdout
    # the HTML report has the evaluation section with its gate chart
    run_cli("report", run, check=True)
    html = (run / "report.html").read_text()
    assert "Evaluation suites" in html and "Gated metrics: value vs baseline" in html
    assert ">mc.n</text>" in html and "PASS" in html
    # the run is now a baseline for the next round
    again = eval_json([run, "--baseline", run], tmp_path / "c")
    assert again["baseline"] == again["suites"] and again["passed"]
