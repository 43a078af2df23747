"""Fault injection, outputs: no command destroys what it did not write (`--overwrite` aside, and
never its input); a file where a folder is expected and the reverse; a read-only folder and a full
disk (small tmpfs mounts: skipped with the reason where mounting is not allowed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_faults_recipe import assert_one_line_error
from .test_trainer import DEMO, sets


def foreign(folder: Path) -> Path:
    """A folder of the user's that no command wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("precious")
    return folder


def untouched(folder: Path) -> bool:
    return (folder / "notes.txt").read_text() == "precious"


def test_tiny_replaces_its_own_folder_only(tmp_path):
    own = tmp_path / "own"
    run_cli("tiny", own, "--hidden", 64, "--heads", 2, "--kv-heads", 1, check=True)
    run_cli("tiny", own, "--hidden", 64, "--heads", 2, "--kv-heads", 1, "--seed", 1, check=True)
    mine = foreign(tmp_path / "mine")
    last = assert_one_line_error(run_cli("tiny", mine))
    assert "not empty and was not written by `eden-mlx tiny`" in last and "--overwrite" in last
    assert untouched(mine)
    run_cli("tiny", mine, "--hidden", 64, "--heads", 2, "--kv-heads", 1, "--overwrite",
            check=True)
    assert not (mine / "notes.txt").exists() and (mine / "config.json").is_file()


def test_fuse_never_writes_over_a_run_or_its_input(tmp_path, tiny_qwen2, lora_qwen2):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    last = assert_one_line_error(run_cli("fuse", "--model", tiny_qwen2, "--adapter", lora_qwen2,
                                         "--output", run))
    assert "not empty" in last and (run / "run.json").read_text() == "{}"
    for target in (tiny_qwen2, lora_qwen2):  # not even with --overwrite
        last = assert_one_line_error(run_cli("fuse", "--model", tiny_qwen2, "--adapter",
                                             lora_qwen2, "--output", target, "--overwrite"))
        assert "would overwrite the input" in last
    out = tmp_path / "fused"
    for _ in range(2):  # its own previous output is replaced without asking
        run_cli("fuse", "--model", tiny_qwen2, "--adapter", lora_qwen2, "--output", out,
                check=True)
    last = assert_one_line_error(run_cli("fuse", "--model", tiny_qwen2, "--requantize", "4",
                                         "--group-size", "7", "--output", tmp_path / "q"))
    assert "--group-size" in last


def test_adapter_conversions_refuse_foreign_folders_and_their_input(tmp_path, lora_qwen2):
    target = foreign(tmp_path / "target")
    assert "not empty" in assert_one_line_error(
        run_cli("export", "peft", lora_qwen2, "--output", target))
    assert untouched(target)
    assert "would overwrite the input" in assert_one_line_error(
        run_cli("export", "peft", lora_qwen2, "--output", lora_qwen2, "--overwrite"))
    peft = tmp_path / "peft"
    run_cli("export", "peft", lora_qwen2, "--output", peft, check=True)
    run_cli("export", "peft", lora_qwen2, "--output", peft, check=True)  # own: replaced
    assert "not empty" in assert_one_line_error(
        run_cli("import", "peft", peft, "--output", target))
    assert untouched(target)
    assert "would overwrite the input" in assert_one_line_error(
        run_cli("import", "peft", peft, "--output", peft, "--overwrite"))


def test_file_outputs_refuse_foreign_files_and_folders(tmp_path, fused_qwen2, lora_qwen2,
                                                       tiny_small):
    gguf = tmp_path / "model.gguf"
    gguf.write_text("my notes")
    assert "exists and was not written by `eden-mlx export gguf`" in assert_one_line_error(
        run_cli("export", "gguf", fused_qwen2, "--output", gguf, "--quant", "f32"))
    assert gguf.read_text() == "my notes"
    run_cli("export", "gguf", fused_qwen2, "--output", gguf, "--quant", "f32", "--overwrite",
            check=True)
    run_cli("export", "gguf", fused_qwen2, "--output", gguf, "--quant", "f32", check=True)
    assert "a file is expected" in assert_one_line_error(
        run_cli("export", "gguf", fused_qwen2, "--output", tmp_path, "--quant", "f32"))
    assert "a file is expected" in assert_one_line_error(
        run_cli("export", "ollama", gguf, "--output", tmp_path))
    # An adapter of another model size (hidden 64 vs 128): refused, nothing written.
    lora = tmp_path / "lora.gguf"
    last = assert_one_line_error(run_cli("export", "gguf-lora", lora_qwen2, "--model",
                                         tiny_small, "--output", lora))
    assert "pass the base model the adapter was trained on" in last and not lora.exists()


@pytest.fixture
def mount(tmp_path):
    """mount(opts) -> a fresh tmpfs folder mounted with `opts`; skipped where not allowed."""
    mounted = []

    def _mount(opts: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
        mounted.append(where)
        return where

    yield _mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_read_only_output_is_one_line_exit_1(mount, tiny_qwen2, lora_qwen2):
    ro = mount("ro,size=1m")
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{"train.max_steps": 2}), "--output",
                   ro / "run", "--no-dashboard")
    assert "file system is read-only" in assert_one_line_error(proc, code=1)
    proc = run_cli("export", "peft", lora_qwen2, "--output", ro / "peft")
    assert "file system is read-only" in assert_one_line_error(proc, code=1)
    debug = run_cli("export", "peft", lora_qwen2, "--output", ro / "peft",
                    env={"EDEN_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "OSError" in debug.stderr


def test_full_disk_during_training_ends_the_run_cleanly(mount, tiny_qwen2):
    disk = mount("size=600k")
    out = disk / "run"
    # rank 64 on every projection: ~1.3 MB per checkpoint, more than the disk holds.
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{
        "train.max_steps": 4, "train.save_every": 2, "adapter.rank": 64}), "--output", out,
        "--no-dashboard")
    last = assert_one_line_error(proc, code=1)
    assert "the disk is full" in last and "--resume" in last
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "error" and "No space left" in info["error"]
    assert not list(out.glob(".tmp-*"))  # the half-written checkpoint was removed
