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


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_qwen2):
    out = tmp_path_factory.mktemp("tracked") / "run"
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "model.dtype": "float32", "train.max_steps": STEPS, "train.eval_every": 3,
        "eval.after_train": "true", "eval.suites": "[{name: heldout, kind: loss, split: test}]",
        "eval.gates": "{}", "output.report_to": "[tensorboard, wandb]"}), "--output", out,
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
