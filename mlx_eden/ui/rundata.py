"""A finished (or running, or killed) run directory read back for the report.

Reads run.json, metrics.jsonl and memory.jsonl when present. A line cut short by a kill is
skipped, as resume does; a missing memory.jsonl falls back to the per-step peak the loop logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..run.rundir import RunDir


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(record, dict):
            out.append(record)
    return out


@dataclass
class RunRecord:
    path: Path
    label: str
    info: dict
    events: list[dict]
    memory: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def train(self) -> list[dict]:
        return self.of("train")

    @property
    def evals(self) -> list[dict]:
        return self.of("eval")

    def _planned(self, key: str) -> float | None:
        """The planner's figure: run.json first (where `train` stores it), else the newest
        start event that carries it."""
        value = self.info.get(key)
        if value is None:
            value = next((s[key] for s in reversed(self.of("start")) if s.get(key) is not None),
                         None)
        return float(value) if value is not None else None

    @property
    def budget_gb(self) -> float | None:
        return self._planned("budget_gb")

    @property
    def predicted_peak_gb(self) -> float | None:
        return self._planned("predicted_peak_gb")

    def memory_points(self) -> dict[str, list[tuple[float, float]]]:
        """GiB by step: from the profiler (memory.jsonl or memory events) when it ran, else the
        peak each train event records."""
        samples = self.memory or self.of("memory")
        if samples:
            return {key: [(m["step"], m[f"{key}_gb"]) for m in samples if f"{key}_gb" in m]
                    for key in ("peak", "active")}
        return {"peak": [(t["step"], t["peak_memory_gb"]) for t in self.train
                         if "peak_memory_gb" in t]}

    def summary(self) -> dict:
        train, evals = self.train, self.evals
        stop = (self.of("stop") or [{}])[-1]
        best = min(evals, key=lambda e: e["val_loss"]) if evals else None
        seconds = sum(t.get("step_time", 0.0) for t in train)
        peaks = [v for _, v in self.memory_points().get("peak", [])]
        last = train[-10:]
        return {
            "run": self.label, "status": self.info.get("status", "?"),
            "steps": f"{train[-1]['step']}/{train[-1]['total_steps']}" if train else "0",
            "train_loss": sum(t["loss"] for t in last) / len(last) if last else None,
            "best_val_loss": best["val_loss"] if best else None,
            "best_step": best["step"] if best else None,
            "tokens_per_sec": sum(t.get("tokens", 0) for t in train) / seconds if seconds else None,
            "peak_gb": max(peaks) if peaks else None,
            "elapsed": stop.get("extra", {}).get("elapsed") or (train[-1]["elapsed"] if train
                                                                else None),
        }


def load_run(path: str | Path, label: str | None = None) -> RunRecord:
    rundir = RunDir(path)
    info = rundir.read_run_json()  # a UserError naming the directory when it is not a run
    events = read_jsonl(rundir.metrics)
    if not events:
        raise UserError("the run has no metrics yet (metrics.jsonl is missing or empty)",
                        file=str(rundir.metrics), hint="report a run once it has trained a step")
    return RunRecord(path=Path(path), label=label or Path(path).name, info=info, events=events,
                     memory=read_jsonl(rundir.memory))


def load_runs(paths: list[str]) -> list[RunRecord]:
    """Each run labelled by its directory name, with the parent added where two names clash."""
    names = [Path(p).resolve().name for p in paths]
    labels = [f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n
              for p, n in zip(paths, names, strict=True)]
    return [load_run(p, label) for p, label in zip(paths, labels, strict=True)]
