"""The run directory: the contract that fuse, export, report and resume rely on.

    run.json              resolved recipe, versions, device, seed, data SHA-256s, git commit, status
    metrics.jsonl         one JSON object per event
    adapter/              the latest adapter (mlx-lm format)
    best/                 the adapter of the best evaluation
    checkpoints/step-N/   adapter + optimizer state + trainer_state.json

Everything is written to a temporary name and renamed into place, so a kill at any instant leaves
either the previous complete file or directory, or the new complete one (mlx_eden/safeio.py). One
process at a time: `lock()` takes an flock on `.lock` (released by the kernel when the holder
dies, so a dead PID never blocks a run).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from ..errors import UserError
from ..safeio import (  # noqa: F401  (sha256 is read from here by run/ and eval/)
    atomic_file,
    publish_dir,
    read_json_object,
    repair_published,
    sha256,
    write_json_atomic,
)

__all__ = ["RunDir", "publish_dir", "write_json_atomic", "run_info", "sha256"]

CHECKPOINT_PREFIX = "step-"
CHECKPOINT_NAME = re.compile(r"^step-(\d+)$")  # not step-N.bak, step-N.tmp, ...
LOCK = ".lock"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("mlx-eden", "mlx", "mlx-lm", "numpy", "torch", "transformers", "peft"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path.cwd())
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    """Paths, the lock and the atomic writers of one run."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.adapter = self.root / "adapter"
        self.best = self.root / "best"
        self.run_json = self.root / "run.json"
        self.metrics = self.root / "metrics.jsonl"
        self.memory = self.root / "memory.jsonl"
        self._lock_fd: int | None = None

    def started(self) -> bool:
        """Whether anything but an empty start (the lock, an empty checkpoints/, temporary
        folders of a start-up that was interrupted) is in the folder."""
        if not self.root.is_dir():
            return False
        for p in self.root.iterdir():
            if p.name == LOCK or p.name.startswith(".tmp-"):
                continue
            if p == self.checkpoints and p.is_dir() and not any(p.iterdir()):
                continue
            return True
        return False

    def lock(self) -> None:
        """Take the run's lock for the life of this process, or say which process holds it."""
        if self._lock_fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"the run directory is in use by process {holder}",
                            file=str(self.root), hint="wait for it to finish, or pass "
                            "--output NEW_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def prepare(self, resume: bool) -> None:
        """Lock the folder, refuse a fresh run over a started one, repair a cut publish."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError("the run directory is a file", file=str(self.root),
                            hint="pass --output NEW_DIR")
        existed = self.root.exists()
        self.lock()
        if not resume and self.started():
            if not existed:  # raced: another fresh run created it after we looked
                self.unlock()
            raise UserError("run directory already exists", file=str(self.root),
                            hint="add --resume to continue it, or pass --output NEW_DIR")
        self.checkpoints.mkdir(exist_ok=True)
        for name in os.listdir(self.root):  # temporary folders of a killed process
            if name.startswith(".tmp-"):
                shutil.rmtree(self.root / name, ignore_errors=True)
        for final in (self.adapter, self.best):
            repair_published(final)

    def tmp_dir(self, name: str) -> Path:
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step:07d}"

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints that finished writing (a rename makes them visible), oldest first;
        stray names (step-N.bak, copies) are not checkpoints."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir()
                 if (m := CHECKPOINT_NAME.match(p.name)) and p.is_dir()
                 and (p / "trainer_state.json").is_file()]
        return [p for _, p in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        found = self.complete_checkpoints()
        return found[-1] if found else None

    def prune(self, keep: int) -> None:
        for old in self.complete_checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def write_run_json(self, info: dict) -> None:
        write_json_atomic(self.run_json, info)

    def read_run_json(self) -> dict:
        if not self.run_json.is_file():
            raise UserError("not a run directory (no run.json)", file=str(self.root),
                            hint="pass the --output directory of an eden-mlx train run")
        return read_json_object(self.run_json, "run.json")

    def read_recipe_dict(self) -> dict:
        """The resolved recipe run.json recorded (a UserError when it has none)."""
        recipe = self.read_run_json().get("recipe")
        if not isinstance(recipe, dict):
            raise UserError("run.json has no recipe", file=str(self.run_json),
                            hint="restore it, or start a new run with --output NEW_DIR")
        return recipe

    def truncate_logs(self, after_step: int) -> None:
        """On resume, drop the events and memory rows of steps a killed run did after its last
        checkpoint (all of them when it had none), so no step appears twice."""
        for path in (self.metrics, self.memory):
            if path.is_symlink() or not path.is_file():
                continue
            kept = []
            for line in path.read_text(errors="replace").splitlines():
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by the kill
                step = ev.get("step", 0) if isinstance(ev, dict) else None
                if after_step and isinstance(step, int) and step <= after_step:
                    kept.append(line)
            with atomic_file(path) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept))


def run_info(recipe, data_files: list[str], backend: str, backend_reason: str, model_info,
             status: str, started: float, ended: float | None = None, **extra) -> dict:
    return {
        "recipe": recipe.to_dict(),
        "versions": versions(),
        "backend": backend,
        "backend_reason": backend_reason,
        "device": model_info.device if model_info else None,
        "model": vars(model_info) if model_info else None,
        "seed": recipe.train.seed,
        "data": {f: sha256(f) for f in data_files},
        "git_commit": git_commit(),
        "argv": sys.argv,
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ended)) if ended else None,
        "status": status,
        **extra,
    }
