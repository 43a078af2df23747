"""The unified-memory profiler: memory figures at the end of every phase of training.

The backend's MemoryProbe (backends/base.py) calls the hook the profiler hands it when a phase
ends ("forward", "backward", "update", "eval"); the profiler reads the probe's memory (active,
peak since the previous phase, cache, process RSS), appends a line to memory.jsonl and, once per
step, emits a MemoryEvent with the step's peak and the phase it happened in. "weights" is sampled
once, right after the model and adapters are loaded.

It lives in run/ because it is a listener of the loop's events (it used to sit in memory/, which
made memory -> run.events -> ... -> run/train -> memory an import cycle); memory/ only computes
and measures. Figures are GiB (mlx_eden/units.py) like everything else.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..backends.base import MemoryProbe
from ..safeio import open_append
from ..units import GIB as GB
from .events import Event, MemoryEvent, StartEvent, StepEvent

STEP_PHASES = ("forward", "backward", "update")


@dataclass
class PhaseSample:
    """Memory at the end of one phase; `peak` is the highest active memory during it."""

    step: int
    phase: str
    active: int
    peak: int
    cache: int
    rss: int
    time: float


def jsonl_record(s: PhaseSample) -> dict:
    """One memory.jsonl line: GiB like the MemoryEvents (what the dashboard and the report
    read), with the exact byte counts alongside."""
    return {"step": s.step, "phase": s.phase, "active_gb": s.active / GB, "peak_gb": s.peak / GB,
            "cache_gb": s.cache / GB, "rss_gb": s.rss / GB, "time": s.time,
            "active_bytes": s.active, "peak_bytes": s.peak}


class MemoryProfiler:
    """Listener + the probe's phase hook. `samples` keeps every record for summaries."""

    def __init__(self, probe: MemoryProbe, path: Path | None = None, emit=None):
        self.probe, self.emit = probe, emit
        self.file = open_append(path) if path is not None else None
        self.samples: list[PhaseSample] = []
        self.step = 0
        self._step_samples: list[PhaseSample] = []
        self._eval: PhaseSample | None = None
        self._t0 = time.perf_counter()

    def attach(self, record_weights: bool = True) -> MemoryProfiler:
        """Hook into the backend; record the loaded weights now, or (as a listener of the
        training loop) when the run's StartEvent arrives."""
        self.probe.set_phase_hook(self.phase)
        if record_weights:
            self.phase("weights")
        return self

    def __call__(self, event: Event) -> None:
        """Listener: follow the loop's step counter (phases are tagged with the step they
        belong to; a step's phases happen before its StepEvent)."""
        if isinstance(event, StartEvent):
            self.step = event.start_step
            self.phase("weights")
        elif isinstance(event, StepEvent):
            self.step = event.step

    def phase(self, name: str) -> None:
        m = self.probe.phase_memory()
        step = self.step + 1 if name in STEP_PHASES else self.step
        sample = PhaseSample(step, name, int(m.get("active", 0)), int(m.get("peak", 0)),
                             int(m.get("cache", 0)), int(m.get("rss", 0)),
                             round(time.perf_counter() - self._t0, 4))
        if name == "eval":  # one record per evaluation: the max over its batches
            if self._eval is None or sample.peak > self._eval.peak:
                self._eval = sample
            return
        self._flush_eval()
        self._record(sample)
        if name == "weights":
            self._announce(sample)
        elif name == "update":  # the step is complete: announce its peak
            top = max(self._step_samples + [sample], key=lambda s: s.peak)
            self._announce(PhaseSample(**{**asdict(top), "active": sample.active}))
            self._step_samples = []
        else:
            self._step_samples.append(sample)

    def _record(self, sample: PhaseSample) -> None:
        self.samples.append(sample)
        if self.file is not None:
            self.file.write(json.dumps(jsonl_record(sample)) + "\n")

    def _announce(self, s: PhaseSample) -> None:
        if self.emit is not None:
            self.emit(MemoryEvent(step=s.step, phase=s.phase, active_gb=s.active / GB,
                                  peak_gb=s.peak / GB, cache_gb=s.cache / GB, rss_gb=s.rss / GB))

    def _flush_eval(self) -> None:
        if self._eval is not None:
            self._record(self._eval)
            self._announce(self._eval)
            self._eval = None

    def close(self) -> None:
        self._flush_eval()
        self.probe.set_phase_hook(None)
        if self.file is not None:
            self.file.close()
            self.file = None

    # ------------------------------------------------------------------ summaries

    def peak(self) -> int:
        return max((s.peak for s in self.samples), default=0)

    def phase_peaks(self) -> dict[str, int]:
        """The highest peak of each phase over the run."""
        out: dict[str, int] = {}
        for s in self.samples:
            out[s.phase] = max(out.get(s.phase, 0), s.peak)
        return out
