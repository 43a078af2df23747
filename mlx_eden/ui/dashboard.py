"""The live training dashboard: a listener that folds the loop's events into a RunState, and a
background thread that redraws it with Rich's `Live` at a bounded rate.

Events only update numbers under a lock (microseconds), so the loop never waits for a redraw. The
redraw thread draws at most `max_fps` frames a second, whatever the step rate, and only when the
screen would change; panels are re-rendered only when their inputs changed. That bounds the cost
(benchmarks/dashboard_overhead.py) and keeps the elapsed clock ticking during long steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment

from ..run.events import Event, StartEvent, StopEvent
from . import panels
from .runstate import RunState

MIN_ROWS = 23  # 80x24 minus the line the cursor sits on after the run
CPU_BUDGET = 0.005  # of one core, for drawing
MAX_CREDIT = 0.02  # seconds of CPU an idle dashboard may save up for a burst of redraws
HEADER_ROWS, TOP_ROWS, EVENTS_ROWS = 4, 6, 6


def panel_rows(rows: int) -> dict[str, int]:
    """Header and progress/memory are fixed; a taller terminal grows the loss chart most and
    the events list a little."""
    extra = max(rows, MIN_ROWS) - MIN_ROWS
    events = EVENTS_ROWS + min(extra // 4, 4)
    return {"header": HEADER_ROWS, "top": TOP_ROWS, "events": events,
            "loss": max(rows, MIN_ROWS) - HEADER_ROWS - TOP_ROWS - events}


class DashboardView:
    """The frame Live redraws. Each panel's rendered lines are cached under the state stamps it
    depends on, so a redraw re-renders only what changed (a clock tick: one panel). Composing
    the rows here instead of with rich.Layout also skips Layout's region bookkeeping."""

    def __init__(self, state: RunState, lock: threading.Lock, clock: Callable[[], float]):
        self.state, self.lock, self.clock = state, lock, clock
        self._cache: dict[str, tuple[tuple, list]] = {}
        self._drawn: tuple | None = None

    def _builders(self, now: float) -> dict[str, tuple[tuple, Callable]]:
        s, stamp = self.state, self.state.stamps
        tick = int(s.elapsed(now) or 0)
        return {
            "header": ((stamp["header"],), lambda: panels.header(s)),
            "progress": ((stamp["progress"], tick), lambda: panels.progress(s, now)),
            "memory": ((stamp["memory"],), lambda: panels.memory(s)),
            "loss": ((stamp["loss"],), lambda: panels.loss(s)),
            "events": ((stamp["events"],), lambda: panels.events(s)),
        }

    def _sizes(self, width: int, rows: int) -> dict[str, tuple[int, int]]:
        r = panel_rows(rows)
        left = width // 2
        return {"header": (width, r["header"]), "progress": (left, r["top"]),
                "memory": (width - left, r["top"]), "loss": (width, r["loss"]),
                "events": (width, r["events"])}

    def _keys(self) -> tuple:
        now = self.clock()
        return tuple(self.state.stamps.values()) + (int(self.state.elapsed(now) or 0),)

    def stale(self) -> bool:
        """Whether a redraw would show anything new since the last one."""
        with self.lock:
            return self._keys() != self._drawn

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = max(console.height - 1, MIN_ROWS)
        sizes = self._sizes(options.max_width, rows)
        todo = {}
        with self.lock:  # build the changed panels from a consistent state, render outside
            self._drawn = self._keys()
            for name, (key, build) in self._builders(self.clock()).items():
                key = (*key, *sizes[name])
                if name not in self._cache or self._cache[name][0] != key:
                    todo[name] = (key, build())
        for name, (key, panel) in todo.items():
            width, height = sizes[name]
            lines = console.render_lines(panel, options.update_dimensions(width, height))
            self._cache[name] = (key, lines)
        lines = {name: cached[1] for name, cached in self._cache.items()}
        top = [a + b for a, b in zip(lines["progress"], lines["memory"], strict=True)]
        new_line = Segment.line()
        for line in [*lines["header"], *top, *lines["loss"], *lines["events"]]:
            yield from line
            yield new_line


class Dashboard:
    """Listener: pass it to run_training; use it as a context manager (or call close()) so the
    terminal is restored however the run ends."""

    def __init__(self, console: Console | None = None, max_fps: float = 4.0,
                 clock: Callable[[], float] = time.monotonic):
        self.console = console or Console()
        self.state = RunState()
        self._clock = clock
        self._lock = threading.Lock()  # guards state
        self._draw = threading.Lock()  # orders redraws against start/stop
        self.view = DashboardView(self.state, self._lock, clock)
        self.live = Live(self.view, console=self.console, auto_refresh=False, transient=False,
                         vertical_overflow="crop")
        self._interval = 1.0 / max_fps
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._credit = 0.0  # CPU seconds drawing may still spend; kept across stop/start

    def update(self, event: Event) -> None:
        """Fold an event into what the next redraw shows (microseconds; never draws)."""
        with self._lock:
            self.state.update(event, self._clock())

    def __call__(self, event: Event) -> None:
        self.update(event)
        if isinstance(event, StartEvent):
            self.start()
        elif isinstance(event, StopEvent):
            self.close()

    def start(self) -> None:
        with self._draw:
            if self.live.is_started:
                return
            self.live.start(refresh=True)
            self._done.clear()
            self._thread = threading.Thread(target=self._redraw, name="dashboard", daemon=True)
            self._thread.start()

    def _redraw(self) -> None:
        """At most max_fps frames a second; none while nothing on screen would change (no event,
        the elapsed clock on the same second), so slow steps cost about one small redraw a
        second; and none while drawing has used more than CPU_BUDGET of one core (a credit that
        refills with wall time, spent by each frame's measured CPU time), on any terminal size
        or machine."""
        last = time.monotonic()
        while not self._done.wait(self._interval):
            now = time.monotonic()
            self._credit = min(self._credit + CPU_BUDGET * (now - last), MAX_CREDIT)
            last = now
            with self._draw:
                if self._done.is_set() or self._credit < 0 or not self.view.stale():
                    continue
                cpu = time.thread_time()
                self.live.refresh()
                self._credit -= time.thread_time() - cpu

    def close(self) -> None:
        """Draw the last frame, stop the redraw thread, show the cursor again. Idempotent."""
        self._done.set()
        with self._draw:
            self.live.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
