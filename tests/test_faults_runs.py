"""Fault injection, run directories: concurrent runs, SIGTERM, kills between the renames of a
publish, a kill before the first checkpoint, damaged checkpoints and run.json, a changed dataset,
a planted symlink, a folder left by an interrupted start. Real training of the tiny model on MLX."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

from mlx_eden.run.rundir import RunDir
from mlx_eden.safeio import published

from .conftest import EDEN, ROOT, SAMPLES, run_cli
from .test_faults_recipe import assert_one_line_error
from .test_trainer import DEMO, _wait_for, events, sets


def start(tmp_path, model, name, *extra, env=None, **kw):
    """`eden-mlx train` of the demo recipe in the background."""
    out = tmp_path / name
    cmd = EDEN + ["train", str(DEMO), *sets(model, **kw), "--output", str(out),
                  "--no-dashboard", *map(str, extra)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    return out, proc


def train(out, model, *extra, **kw):
    return run_cli("train", DEMO, *sets(model, **kw), "--output", out, "--no-dashboard", *extra)


def steps_of(run) -> list[int]:
    return [e["step"] for e in events(run, "train")]


def test_concurrent_run_is_refused_naming_the_pid_and_sigterm_checkpoints(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 400, "train.save_every": 0}
    out, p = start(tmp_path, tiny_qwen2, "run", **kw)
    try:
        assert _wait_for(lambda: (out / "metrics.jsonl").exists()
                         and '"event": "train"' in (out / "metrics.jsonl").read_text(), p)
        second = train(out, tiny_qwen2, "--resume", **kw)
        last = assert_one_line_error(second)
        assert f"the run directory is in use by process {p.pid}" in last
        fresh = train(out, tiny_qwen2, **kw)  # a fresh run into it: the same lock
        assert f"in use by process {p.pid}" in assert_one_line_error(fresh)
    finally:
        p.send_signal(signal.SIGTERM)  # like the first Ctrl-C: checkpoint, then exit
        p.wait(timeout=120)
    assert p.returncode == 130, p.stderr.read()
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted"
    stopped = max(steps_of(out))
    assert (out / "checkpoints" / f"step-{stopped:07d}" / "trainer_state.json").is_file()
    # The lock died with the process: a resume proceeds (to a nearer end, changes are warned).
    proc = train(out, tiny_qwen2, "--resume", **{**kw, "train.max_steps": stopped + 2})
    assert proc.returncode == 0, proc.stderr
    assert steps_of(out) == list(range(1, stopped + 3))


def test_kill_between_the_renames_of_best_leaves_a_readable_copy(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 8, "train.eval_every": 2, "train.save_every": 4,
          "train.eval_batches": 1}
    out, p = start(tmp_path, tiny_qwen2, "run", env={"EDEN_FAULT": "between-renames:best"},
                   **kw)
    p.wait(timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr.read()  # killed by the hook, 2nd best
    assert not (out / "best").exists() and (out / ".best.old" / "adapters.safetensors").is_file()
    assert published(out / "best") == out / ".best.old"
    # Readers fall back to the previous copy: fuse the run's best/ as a user would.
    fused = run_cli("fuse", "--model", tiny_qwen2, "--adapter", out / "best", "--output",
                    tmp_path / "fused")
    assert fused.returncode == 0, fused.stderr
    # Resume repairs it first thing (before any new publish could hide the repair).
    rundir = RunDir(out)
    rundir.prepare(resume=True)
    rundir.unlock()
    assert (out / "best" / "adapters.safetensors").is_file() and not (out / ".best.old").exists()
    proc = train(out, tiny_qwen2, "--resume", **kw)
    assert proc.returncode == 0, proc.stderr
    assert (out / "best" / "adapters.safetensors").is_file() and not (out / ".best.old").exists()


def test_kill_before_the_first_checkpoint_then_resume_repeats_no_step(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 6, "train.save_every": 0}
    out, p = start(tmp_path, tiny_qwen2, "run", **{**kw, "train.max_steps": 400})
    assert _wait_for(lambda: (out / "metrics.jsonl").exists()
                     and '"step": 2' in (out / "metrics.jsonl").read_text(), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not list((out / "checkpoints").iterdir())
    proc = train(out, tiny_qwen2, "--resume", **kw)
    assert proc.returncode == 0, proc.stderr
    assert "no checkpoint found, starting fresh" in proc.stdout + proc.stderr
    assert steps_of(out) == list(range(1, 7))
    rows = [json.loads(line) for line in (out / "memory.jsonl").read_text().splitlines()]
    pairs = [(r["step"], r["phase"]) for r in rows]
    assert pairs and len(pairs) == len(set(pairs))


def test_damaged_checkpoints_run_json_and_planted_symlink(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 6, "train.save_every": 2, "train.keep_checkpoints": 5}
    out = tmp_path / "run"
    assert train(out, tiny_qwen2, **kw).returncode == 0
    ckpts = out / "checkpoints"
    shutil.copytree(ckpts / "step-0000004", ckpts / "step-0000004.bak")  # a stray copy
    newest = ckpts / "step-0000006" / "adapters.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short
    proc = train(out, tiny_qwen2, "--resume", **{**kw, "train.max_steps": 8})
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint step-0000006 is damaged" in proc.stdout + proc.stderr
    assert json.loads((out / "run.json").read_text())["resumed_from"].endswith("step-0000004")
    assert steps_of(out) == list(range(1, 9))

    # Changing the optimizer of a run is refused up front (its state has another layout).
    proc = train(out, tiny_qwen2, "--resume", **{**kw, "train.optimizer": "sgd"})
    assert "train.optimizer" in assert_one_line_error(proc)

    # metrics.jsonl replaced by a link to a file elsewhere: never followed.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (out / "metrics.jsonl").unlink()
    (out / "metrics.jsonl").symlink_to(victim)
    proc = train(out, tiny_qwen2, "--resume", **{**kw, "train.max_steps": 9})
    assert "symbolic link" in assert_one_line_error(proc)
    assert victim.read_text() == "keep me\n"
    (out / "metrics.jsonl").unlink()

    (out / "run.json").write_text('{"recipe": ')  # cut by a crash of another tool
    for args in (["train", DEMO, *sets(tiny_qwen2, **kw), "--output", out, "--resume",
                  "--no-dashboard"], ["report", out], ["eval", out]):
        last = assert_one_line_error(run_cli(*args))
        assert f"{out / 'run.json'}: run.json is not valid JSON" in last, (args, last)


def test_resume_after_the_data_changed_says_so_and_keeps_the_history(tmp_path, tiny_qwen2):
    data = tmp_path / "train.jsonl"
    shutil.copy(SAMPLES / "chat" / "train.jsonl", data)
    kw = {"train.max_steps": 4, "train.save_every": 2, "data.train": data}
    out = tmp_path / "run"
    assert train(out, tiny_qwen2, **kw).returncode == 0
    before = json.loads((out / "run.json").read_text())["data"][str(data)]
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:200]))
    proc = train(out, tiny_qwen2, "--resume", **{**kw, "train.max_steps": 6})
    assert proc.returncode == 0, proc.stderr
    assert "the training data changed since this run started" in proc.stdout + proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["data"][str(data)] != before
    assert info["data_history"][0]["data"][str(data)] == before


def test_folder_of_an_interrupted_start_is_reused_a_foreign_one_refused(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 2}
    left = tmp_path / "left"  # what a Ctrl-C during model loading leaves
    (left / "checkpoints").mkdir(parents=True)
    (left / ".lock").write_text("12345\n")
    proc = train(left, tiny_qwen2, **kw)
    assert proc.returncode == 0, proc.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert "run directory already exists" in assert_one_line_error(train(mine, tiny_qwen2, **kw))
    assert (mine / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in mine.iterdir()) == [".lock", "notes.txt"]
