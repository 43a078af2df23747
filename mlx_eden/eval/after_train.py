"""eval.after_train: the suites run on the run's best adapter (else its last) as soon as training
ends; the verdict is the last event of metrics.jsonl and the `eval` entry of run.json."""

from __future__ import annotations

import json
from pathlib import Path

from ..run.events import SuitesEvent
from ..run.rundir import RunDir
from .runner import evaluate


def evaluate_after_training(recipe, run_root: str | Path, backend: str,
                            progress=lambda msg: None, listeners=()) -> dict:
    """Judge the suites; the verdict goes to metrics.jsonl, run.json and `listeners` (trackers)."""
    run = RunDir(run_root)
    adapter = run.best if (run.best / "adapters.safetensors").is_file() else run.adapter
    summary = evaluate(recipe, adapter=adapter, out_dir=run.root, backend=backend,
                       progress=progress)
    event = SuitesEvent(passed=summary["passed"], adapter=str(adapter),
                        suites=summary["suites"], gates=summary["gates"])
    with open(run.metrics, "a") as f:
        f.write(json.dumps(event.to_dict(), default=float) + "\n")
    for listener in listeners:
        listener(event)
    info = run.read_run_json()
    info["eval"] = {"passed": summary["passed"], "adapter": str(adapter),
                    "suites": summary["suites"], "gates": summary["gates"]}
    run.write_run_json(info)
    return summary
