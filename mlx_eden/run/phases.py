"""Where the wall time of a run goes: seconds per phase, from process start to the end.

Why: a user waits for the whole command, not for the training steps. Measured on the tiny model
(240 chats, one epoch, 2 cores), the steps were under 3/4 of the wall time; the rest was start-up
imports, loading, compilation (the first step), evaluation and checkpoint writes. run.json keeps
`phases` (seconds; `other` is what no phase claims: events, logging, run.json itself), the plain
log ends with a `phases` line and the HTML report shows them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Order in run.json, the log line and the report.
ORDER = ("startup", "planning", "data", "model_load", "first_step", "train_steps", "eval",
         "samples", "checkpoints", "best_adapter")


def process_started() -> float:
    """Epoch seconds when this process started (Linux: /proc; elsewhere: now, so start-up is
    counted from the first call, which comes right after the command's imports)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = float(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


class Phases:
    """Accumulates wall seconds per named phase; `startup` runs from process start to creation."""

    def __init__(self, started: float | None = None):
        self.started = process_started() if started is None else started
        now = time.time()
        self.seconds: dict[str, float] = {"startup": max(0.0, now - self.started)}
        self.checked = now

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Count the time spent in the `with` block towards `name`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def to_dict(self) -> dict[str, float]:
        """Seconds per phase in ORDER (then any other names), `other` and `total` (since start)."""
        total = time.time() - self.started
        names = [n for n in ORDER if n in self.seconds]
        names += sorted(set(self.seconds) - set(names))
        out = {n: round(self.seconds[n], 3) for n in names}
        out["other"] = round(max(0.0, total - sum(self.seconds.values())), 3)
        out["total"] = round(total, 3)
        return out


def describe(phases: dict[str, float]) -> str:
    """`startup=1.2s planning=0.3s ... total=12.0s` (the plain log's end line)."""
    return " ".join(f"{name}={seconds:.1f}s" for name, seconds in phases.items())
