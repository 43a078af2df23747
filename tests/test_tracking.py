"""output.report_to: a tiny MLX run feeds TensorBoard event files and an offline W&B run with the
numbers metrics.jsonl holds; a tracker whose package is missing is a one-line error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_trainer import DEMO, events, sets
from .wandb_records import history

pytest.importorskip("tensorboardX", reason="needs the tracking extra (tensorboardX)")
pytest.importorskip("wandb", reason="needs the tracking extra (wandb)")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="needs the tracking extra (tensorboard)")

STEPS = 6
SAMPLES = '[Hello there, {prompt: Say hi, style: terse}]'
SAMPLE_TOKENS = 8


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_qwen2, lora_qwen2):
    out = tmp_path_factory.mktemp("tracked") / "run"
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "model.dtype": "float32", "train.max_steps": STEPS, "train.eval_every": 3,
        "eval.after_train": "true", "eval.suites": "[{name: heldout, kind: loss, split: test}]",
        "eval.gates": "{}", "output.report_to": "[tensorboard, wandb]",
        "eval.samples": SAMPLES, "eval.sample_tokens": SAMPLE_TOKENS,
        # from a random non-zero adapter, barely moved: a 6-step run at 1e-3 answers only
        # newlines, which would not tell one prompt (or style tag) from another
        "adapter.init_from": lora_qwen2, "adapter.rank": 8, "adapter.alpha": 16,
        "train.learning_rate": 1e-5}),
        "--output", out,
        "--no-dashboard",
        env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr
    return out


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_equal_metrics_jsonl(tracked_run):
    tb = tensorboard_scalars(tracked_run)
    train, val = events(tracked_run, "train"), events(tracked_run, "eval")
    assert len(train) == STEPS and len(val) == 2
    for tag, key, rows in [("train/loss", "loss", train), ("train/lr", "lr", train),
                           ("train/grad_norm", "grad_norm", train),
                           ("train/tokens_per_sec", "trained_tokens_per_sec", train),
                           ("memory/peak_gb", "peak_memory_gb", train),
                           ("val/loss", "val_loss", val), ("val/ppl", "val_ppl", val)]:
        # event files hold float32
        assert tb[tag] == [(e["step"], pytest.approx(e[key], rel=1e-6)) for e in rows], tag
    assert any(tag.startswith("memory/") and tag.endswith("/active_gb") for tag in tb)
    # eval.after_train's suites, logged at the last step
    summary = json.loads((tracked_run / "eval" / "summary.json").read_text())
    assert tb["eval/heldout/loss"] == [(STEPS, pytest.approx(summary["suites"]["heldout"]["loss"],
                                                             rel=1e-6))]


def test_wandb_offline_run_holds_the_losses(tracked_run):
    runs = list((tracked_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    files = list(runs[0].glob("run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    rows = history(files[0])
    logged = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert logged == [(e["step"], pytest.approx(e["loss"])) for e in events(tracked_run, "train")]
    val = [(r["step"], r["val/loss"]) for r in rows if "val/loss" in r]
    assert val == [(e["step"], pytest.approx(e["val_loss"])) for e in events(tracked_run, "eval")]
    assert any("eval/heldout/perplexity" in r for r in rows)


def test_samples_at_every_evaluation_equal_greedy_generation(tracked_run, tiny_qwen2):
    """eval.samples: in metrics.jsonl right after each evaluation; the last ones are what the
    final adapter answers greedily (MLX, float32), the style's tag in the system prompt."""
    from mlx_eden.backends.mlx.inference import greedy, load
    from mlx_eden.data.prompting import conversation_ids, stop_ids
    from mlx_eden.data.render import load_tokenizer

    rows = events(tracked_run, "samples")
    assert [r["step"] for r in rows] == [e["step"] for e in events(tracked_run, "eval")]
    assert [(s["prompt"], s["style"]) for s in rows[-1]["samples"]] == [
        ("Hello there", ""), ("Say hi", "terse")]
    tok = load_tokenizer(tiny_qwen2)
    model, _ = load(tiny_qwen2, tracked_run / "adapter")
    system = json.loads((tracked_run / "run.json").read_text())["recipe"]["data"]["system_prompt"]
    expected = []
    for prompt, tag in [("Hello there", ""), ("Say hi", "<STYLE_TERSE>")]:
        text = " ".join(p for p in (tag, system) if p)
        messages = ([{"role": "system", "content": text}] if text else []) + [
            {"role": "user", "content": prompt}]
        ids = greedy(model, [conversation_ids(tok, messages, {})], SAMPLE_TOKENS)[0]
        cut = next((i for i, t in enumerate(ids) if t in stop_ids(tok)), len(ids))
        expected.append(tok.decode(ids[:cut], skip_special_tokens=True))
    assert [s["answer"] for s in rows[-1]["samples"]] == expected
    assert len({s["answer"] for r in rows for s in r["samples"]}) > 1, rows  # not degenerate


def test_samples_reach_tensorboard_wandb_and_the_report(tracked_run):
    acc = event_accumulator.EventAccumulator(str(tracked_run / "tensorboard"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    texts = acc.Tensors("samples/text_summary")
    rows = events(tracked_run, "samples")
    assert [t.step for t in texts] == [r["step"] for r in rows]
    last = texts[-1].tensor_proto.string_val[0].decode()
    assert "| style | prompt | answer | tokens |" in last and "| terse | Say hi |" in last
    run = next((tracked_run / "wandb").glob("offline-run-*"))
    tables = [r for r in history(next(run.glob("run-*.wandb"))) if "samples/_type" in r]
    assert [t["step"] for t in tables] == [r["step"] for r in rows]
    assert {t["samples/_type"] for t in tables} == {"table-file"}
    files = list(run.glob("files/media/table/samples_*.table.json"))
    assert len(files) == len(rows) and "Say hi" in files[0].read_text()
    proc = run_cli("report", tracked_run, "--output", tracked_run / "r.html")
    assert proc.returncode == 0, proc.stderr
    html = (tracked_run / "r.html").read_text()
    assert html.count('<table class="samples">') == len(rows) and "Say hi" in html


def test_missing_tracker_package_is_one_line(tmp_path, tiny_qwen2):
    # sys.modules[name] = None makes the package unimportable (find_spec answers None) in the
    # child only, as if it were not installed.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    out = tmp_path / "run"
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "model.dtype": "float32", "train.max_steps": 1, "output.report_to": "wandb"}),
        "--output", out, "--no-dashboard", env={"PYTHONPATH": path})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "output.report_to" in ln]
    assert len(lines) == 1 and "wandb" in lines[0] and "mlx-eden[tracking]" in proc.stderr
    assert not (out / "metrics.jsonl").exists()


def test_report_to_rejects_unknown_tracker(tmp_path, tiny_qwen2):
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{"output.report_to": "[tensorbord]"}),
                   "--output", tmp_path / "run", "--no-dashboard")
    assert proc.returncode == 2 and "tensorboard" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
