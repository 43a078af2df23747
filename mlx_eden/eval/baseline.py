"""Baselines: the base model without the adapter (`base`, cached), another run's results
(RUN_DIR) or a saved result file (FILE.json: a summary.json or `eval --json` output).

The base-model cache is keyed by the model (path, dtype, quantization, weight files' sizes and
times), the suite's declaration, the rendering options and the SHA-256 of the data it reads, so a
monthly round re-scores the base only when one of those changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..data.weights import train_paths
from ..errors import UserError
from ..run.rundir import sha256, write_json_atomic


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "mlx-eden" / "eval-base"


def cache_key(recipe, model_dir: Path, suite, backend: str) -> str:
    files = [suite.data] if suite.data else \
        [*train_paths(recipe.data), *recipe.data.valid, *recipe.data.test]
    weights = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime))
                     for p in Path(model_dir).glob("*.safetensors"))
    key = {"model": str(Path(model_dir).resolve()), "weights": weights,
           "dtype": recipe.model.dtype, "quantize": dataclasses.asdict(recipe.model.quantize),
           "backend": backend, "suite": dataclasses.asdict(suite),
           "render": {k: v for k, v in dataclasses.asdict(recipe.data).items()
                      if k not in ("train", "valid", "test")},
           "data": [sha256(f) for f in files if Path(f).is_file()], "seed": recipe.train.seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached(key: str) -> dict | None:
    path = cache_dir() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def store(key: str, metrics: dict) -> None:
    path = cache_dir() / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, metrics)


def read_baseline(source: str) -> dict[str, dict]:
    """{suite: {metric: value}} from a run directory or a result file."""
    path = Path(source)
    if path.is_dir():
        path = path / "eval" / "summary.json"
    if not path.is_file():
        raise UserError("no evaluation results there", file=str(path),
                        hint="--baseline base, a run directory evaluated before, or a "
                        "summary.json / `eden-mlx eval --json` file")
    try:
        suites = json.loads(path.read_text())["suites"]
    except (ValueError, KeyError, TypeError):
        raise UserError("not an evaluation result (needs a \"suites\" object)",
                        file=str(path)) from None
    if not isinstance(suites, dict):
        raise UserError("\"suites\" must map suite names to metrics", file=str(path))
    return suites
