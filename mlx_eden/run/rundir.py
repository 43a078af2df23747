"""The run directory: the contract that fuse, export, report and resume rely on.

    run.json              resolved recipe, versions, device, seed, data SHA-256s, git commit, status
    metrics.jsonl         one JSON object per event
    adapter/              the latest adapter (mlx-lm format)
    best/                 the adapter of the best evaluation
    checkpoints/step-N/   adapter + optimizer state + trainer_state.json

Everything is written to a temporary name and renamed into place, so a kill at any instant leaves
either the previous complete file or directory, or the new complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from ..errors import UserError

CHECKPOINT_PREFIX = "step-"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place, replacing any previous one."""
    for p in tmp.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


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
    """Paths and atomic writers for one run."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.adapter = self.root / "adapter"
        self.best = self.root / "best"
        self.run_json = self.root / "run.json"
        self.metrics = self.root / "metrics.jsonl"
        self.memory = self.root / "memory.jsonl"

    def prepare(self, resume: bool) -> None:
        if self.root.exists() and not resume and any(self.root.iterdir()):
            raise UserError("run directory already exists", file=str(self.root),
                            hint="add --resume to continue it, or pass --output NEW_DIR")
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)

    def tmp_dir(self, name: str) -> Path:
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step:07d}"

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints that finished writing (a rename makes them visible), oldest first."""
        if not self.checkpoints.exists():
            return []
        found = [p for p in self.checkpoints.iterdir()
                 if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
                 and (p / "trainer_state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

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
        return json.loads(self.run_json.read_text())

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop events of steps the killed run did after its last checkpoint."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if ev.get("step", 0) <= after_step:
                kept.append(line)
        tmp = self.metrics.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        os.replace(tmp, self.metrics)


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
