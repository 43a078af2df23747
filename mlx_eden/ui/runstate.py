"""What the live dashboard knows about a run, built only from the loop's events.

Kept free of Rich so the arithmetic (smoothing, ETA, downsampled history, memory pressure) is
tested on its own and the renderer only formats numbers it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..run.events import (
    EvalEvent,
    Event,
    MemoryEvent,
    ReferenceEvent,
    SamplesEvent,
    SaveEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    WarningEvent,
)

PRESSURE = 0.90  # measured peak / budget at which memory counts as under pressure
MAX_WARNINGS = 20
PANELS = ("header", "progress", "memory", "loss", "events")

# Which panels an event can change; a redraw re-renders only those.
TOUCHES = {StartEvent: PANELS, StepEvent: ("progress", "loss"), EvalEvent: ("loss", "events"),
           SaveEvent: ("events",), MemoryEvent: ("memory",), ReferenceEvent: ("progress",), WarningEvent: ("events",), SamplesEvent: ("events",),
           StopEvent: ("header", "progress", "events")}


class Smoothed:
    """Exponential moving average with start-up bias correction (as TensorBoard smooths curves),
    so the first values are not pulled toward zero."""

    def __init__(self, weight: float = 0.9):
        self.weight, self._avg, self._norm = weight, 0.0, 0.0

    def add(self, value: float) -> float:
        self._avg = self.weight * self._avg + (1 - self.weight) * value
        self._norm = self.weight * self._norm + (1 - self.weight)
        return self.value

    @property
    def value(self) -> float | None:
        return self._avg / self._norm if self._norm else None


class History:
    """(step, value) points, halved by averaging neighbours whenever `cap` is reached, so a run
    of a million steps keeps a few thousand points and charts stay cheap to draw."""

    def __init__(self, cap: int = 2048):
        self.cap, self.points = cap, []

    def add(self, step: float, value: float) -> None:
        self.points.append((step, value))
        if len(self.points) >= self.cap:
            pairs = zip(self.points[0::2], self.points[1::2], strict=False)
            self.points = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in pairs]

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class RunState:
    start: StartEvent | None = None
    step: StepEvent | None = None
    last_eval: EvalEvent | None = None
    last_checkpoint: SaveEvent | None = None
    last_best: SaveEvent | None = None
    memory: MemoryEvent | None = None
    reference: ReferenceEvent | None = None  # DPO/KTO reference pass progress
    samples: SamplesEvent | None = None  # eval.samples answered at the last evaluation
    stop: StopEvent | None = None
    warnings: list[WarningEvent] = field(default_factory=list)
    loss_avg: Smoothed = field(default_factory=Smoothed)
    tokens_avg: Smoothed = field(default_factory=Smoothed)
    time_avg: Smoothed = field(default_factory=Smoothed)
    wall_avg: Smoothed = field(default_factory=Smoothed)
    train_loss: History = field(default_factory=History)
    val_loss: History = field(default_factory=History)
    peak_seen_gb: float = 0.0
    steps_this_session: int = 0
    stepped_at: float | None = None  # clock reading when the last StepEvent arrived
    stamps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PANELS, 0))

    def update(self, e: Event, now: float) -> None:
        """Fold one event into the state; `now` is a monotonic clock reading."""
        for panel in TOUCHES.get(type(e), ()):
            self.stamps[panel] += 1
        if isinstance(e, StartEvent):
            self.start = e
            if e.start_step:
                self._load_history(e)
        elif isinstance(e, StepEvent):
            self._on_step(e, now)
        elif isinstance(e, EvalEvent):
            self.last_eval = e
            self.val_loss.add(e.step, e.val_loss)
        elif isinstance(e, SaveEvent):
            # "adapter" always follows a checkpoint and says nothing new.
            if e.what == "checkpoint":
                self.last_checkpoint = e
            elif e.what == "best":
                self.last_best = e
        elif isinstance(e, MemoryEvent):
            self.memory = e
            self.peak_seen_gb = max(self.peak_seen_gb, e.peak_gb)
        elif isinstance(e, ReferenceEvent):
            self.reference = e
        elif isinstance(e, SamplesEvent):
            self.samples = e
        elif isinstance(e, WarningEvent):
            self.warnings = [*self.warnings[-(MAX_WARNINGS - 1):], e]
        elif isinstance(e, StopEvent):
            self.stop = e

    def _load_history(self, e: StartEvent) -> None:
        """On --resume, the loss curves so far, from the run's metrics.jsonl (the loop has cut
        it back to the checkpoint's step), so the chart continues instead of starting empty."""
        from .rundata import read_jsonl

        for record in read_jsonl(Path(e.run_dir) / "metrics.jsonl"):
            step = record.get("step")
            if step is None or step > e.start_step:
                continue
            if record.get("event") == "train":
                self.train_loss.add(step, record["loss"])
                self.loss_avg.add(record["loss"])
            elif record.get("event") == "eval":
                self.val_loss.add(step, record["val_loss"])

    def _on_step(self, e: StepEvent, now: float) -> None:
        # Wall time between steps includes evals and checkpoints, so the ETA does too.
        wall = e.step_time if self.step is None else max(e.elapsed - self.step.elapsed, 0.0)
        self.step, self.stepped_at = e, now
        self.steps_this_session += 1
        self.loss_avg.add(e.loss)
        self.tokens_avg.add(e.tokens)
        self.time_avg.add(e.step_time)
        self.wall_avg.add(wall)
        self.train_loss.add(e.step, e.loss)
        if e.peak_memory_gb > self.peak_seen_gb or self.steps_this_session == 1:
            self.peak_seen_gb = max(self.peak_seen_gb, e.peak_memory_gb)
            self.stamps["memory"] += 1

    # ------------------------------------------------------------------ derived figures

    @property
    def total_steps(self) -> int | None:
        if self.step is not None:
            return self.step.total_steps
        return self.start.total_steps if self.start else None

    @property
    def current_step(self) -> int:
        if self.step is not None:
            return self.step.step
        return self.start.start_step if self.start else 0

    def elapsed(self, now: float) -> float | None:
        """Run time so far, ticking between steps while the run is live."""
        if self.step is None:
            return None
        if self.stop is not None or self.stepped_at is None:
            return self.step.elapsed
        return self.step.elapsed + max(now - self.stepped_at, 0.0)

    def eta(self) -> float | None:
        total, per_step = self.total_steps, self.wall_avg.value
        if self.stop is not None:
            return 0.0
        if total is None or per_step is None:
            return None
        return max(total - self.current_step, 0) * per_step

    def tokens_per_sec(self) -> float | None:
        """Trained tokens per second of step time, smoothed over recent steps (a ratio of two
        averages, so long and short steps weigh by their tokens)."""
        tokens, seconds = self.tokens_avg.value, self.time_avg.value
        return tokens / seconds if tokens is not None and seconds else None

    def active_gb(self) -> float | None:
        return self.memory.active_gb if self.memory else None

    def peak_gb(self) -> float | None:
        return self.peak_seen_gb if self.memory or self.step else None

    def budget_gb(self) -> float | None:
        return self.start.budget_gb if self.start else None

    def predicted_gb(self) -> float | None:
        return self.start.predicted_peak_gb if self.start else None

    def memory_fraction(self) -> float | None:
        """Measured peak as a fraction of the budget, None when either is unknown."""
        peak, budget = self.peak_gb(), self.budget_gb()
        return peak / budget if peak is not None and budget else None

    def under_pressure(self) -> bool:
        fraction = self.memory_fraction()
        return fraction is not None and fraction >= PRESSURE
