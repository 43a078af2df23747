"""The live dashboard driven by a synthetic event stream, rendered through Rich's console capture
at 80x24 and larger; its terminal lifecycle; and the plain fallback for non-terminals."""

from __future__ import annotations

import io
import math
import sys
import time

import pytest
from rich.console import Console

from mlx_eden.run.events import (
    EvalEvent,
    MemoryEvent,
    SamplesEvent,
    SaveEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    WarningEvent,
)
from mlx_eden.ui.console import console_listener, wants_dashboard
from mlx_eden.ui.dashboard import Dashboard
from mlx_eden.ui.plainlog import PlainLog
from mlx_eden.ui.runstate import History, RunState
from mlx_eden.ui.textchart import block_chart, by_step, sparkline

SHOW_CURSOR, HIDE_CURSOR = "\x1b[?25h", "\x1b[?25l"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def capable_terminal(monkeypatch):
    """Rich reads these; CI may set any of them."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


def start_event(budget=None, predicted=None, start_step=0, total=100) -> StartEvent:
    return StartEvent(
        recipe_name="tiny-demo", model="models/tiny-qwen2", adapter="lora r=16", backend="mlx",
        backend_reason="requested", device="cpu", run_dir="runs/demo", total_steps=total,
        start_step=start_step, trainable_params=131072, params_total=1313024, train_samples=480,
        valid_samples=48, truncated=3, predicted_peak_gb=predicted, budget_gb=budget)


def step_event(step: int, total: int = 100, step_time: float = 0.5) -> StepEvent:
    return StepEvent(step=step, epoch=step / 30, loss=6 * math.exp(-step / 30) + 1, lr=1e-3,
                     grad_norm=0.8, tokens=800, trained_tokens_per_sec=800 / step_time,
                     step_time=step_time, peak_memory_gb=0.2, total_steps=total,
                     elapsed=step * step_time)


def stream(steps=60, budget=None, predicted=None, memory=False, patience=3):
    """What the loop emits for a run of `steps` steps with an eval and checkpoint every 20."""
    yield start_event(budget, predicted)
    yield WarningEvent(step=0, message="3 training samples truncated and 0 dropped at "
                                       "data.max_seq_length=128")
    for i in range(1, steps + 1):
        yield step_event(i)
        if memory:
            yield MemoryEvent(step=i, phase="step", active_gb=0.15, peak_gb=0.2, cache_gb=0.01,
                              rss_gb=0.5)
        if i % 20 == 0:
            improved = i != 60
            yield EvalEvent(step=i, val_loss=6 * math.exp(-i / 30) + 1.2, val_ppl=30.0,
                            val_tokens=1000, best_val_loss=2.0, improved=improved,
                            patience_left=patience if improved else patience - 1)
            if improved:
                yield SaveEvent(step=i, path="runs/demo/best", what="best")
            yield SaveEvent(step=i, path=f"runs/demo/checkpoints/step-{i:07d}", what="checkpoint")
            yield SaveEvent(step=i, path="runs/demo/adapter", what="adapter")


def frame(dashboard: Dashboard, width=80, height=24) -> list[str]:
    """The dashboard's current frame as plain text, as a terminal of that size shows it."""
    console = Console(file=io.StringIO(), width=width, height=height, record=True,
                      color_system=None)
    console.print(dashboard.view)
    return console.export_text().splitlines()


def drive(events, clock=None, width=80, height=24) -> tuple[Dashboard, io.StringIO]:
    out = FakeTerminal()
    console = Console(file=out, width=width, height=height, force_terminal=True)
    dashboard = Dashboard(console, clock=clock or FakeClock())
    with dashboard:
        for e in events:
            dashboard(e)
    return dashboard, out


def test_frame_fits_80x24_and_shows_every_panel():
    dashboard, out = drive(stream(budget=0.5, predicted=0.25, memory=True))
    lines = frame(dashboard)
    text = "\n".join(lines)
    assert len(lines) == 23 and max(len(line) for line in lines) == 80
    for title in ("mlx-eden · tiny-demo · running", "progress", "memory", "loss", "events"):
        assert title in text
    # header
    assert "models/tiny-qwen2" in text and "lora r=16" in text and "mlx on cpu" in text
    assert "runs/demo" in text
    # progress: 60 of 100 steps at 0.5 s a step, 800 tokens a step
    assert "60/100" in text and "60%" in text and "opt steps 60" in text
    assert "0:00:30" in text and "ETA 0:00:20" in text and "1,600" in text
    # loss: current, smoothed, lr, grad norm, a chart and the val row
    assert f"loss {step_event(60).loss:.4f}" in text and "lr 1.00e-03" in text
    assert "grad norm 0.800" in text and "█" in text and "val ▕" in text
    # memory: active from MemoryEvent, peak beside the planner's prediction, budget share
    assert "active  0.15 GiB" in text and "0.20 GiB (80% of plan)" in text
    assert "planner 0.25 GiB" in text and "40%" in text
    # events: last eval (no improvement, patience left), last checkpoint, the warning
    assert "eval  step 60: val" in text and "no improvement" in text
    assert "patience 2 left" in text
    assert "checkpoint step 60 (best adapter step 40) → runs/demo/checkpoints/" in text
    assert "3 training samples truncated" in text
    assert out.getvalue().count(HIDE_CURSOR) == 1


def samples_event(step: int, answer: str) -> SamplesEvent:
    return SamplesEvent(step=step, samples=[
        {"prompt": "hello", "style": "", "answer": "old answer", "tokens": 2},
        {"prompt": "Say hi", "style": "terse", "answer": answer, "tokens": 40}])


def test_events_panel_shows_the_newest_sample_within_80x24():
    events = list(stream())
    events.insert(-3, samples_event(40, "an earlier answer"))
    events.insert(-2, samples_event(60, "안녕하세요!\nA second line " + "and more words " * 9))
    dashboard, _ = drive(events)
    lines = frame(dashboard)
    assert len(lines) == 23 and max(len(line) for line in lines) == 80
    text = "\n".join(lines)
    row = next(line for line in lines if "sample" in line)
    # the last sample of the last evaluation, its newlines folded into one cropped row
    assert "sample step 60 [terse] Say hi → 안녕하세요! A second line and more" in row
    assert row.rstrip("│ ").endswith("…") and "earlier" not in text
    # the rest of the panel is still there
    assert "eval  step 60: val" in text and "checkpoint step 60" in text


def test_unknown_memory_figures_show_a_dash():
    """Today the planner and profiler may be absent: peak comes from StepEvent, the rest is —."""
    dashboard, _ = drive(stream(steps=5))
    text = "\n".join(frame(dashboard))
    assert "active  —" in text and "peak    0.20 GiB" in text
    assert "planner — predicted peak" in text and "budget  —  (no budget known)" in text
    assert "eval  —" in text


def test_memory_near_the_budget_turns_red_and_warns():
    dashboard, _ = drive(stream(steps=3, budget=0.21, memory=True))
    text = "\n".join(frame(dashboard))
    assert "95%" in text and "memory pressure: peak at 95% of the budget" in text
    colour = Console(file=io.StringIO(), width=80, height=24, force_terminal=True,
                     color_system="standard", record=True)
    colour.print(dashboard.view)
    assert "\x1b[1;31m0.20 GiB" in colour.export_text(styles=True)  # bold red peak

    calm, _ = drive(stream(steps=3, budget=2.0, memory=True))
    assert "memory pressure" not in "\n".join(frame(calm))


def test_nan_stop_and_status_are_shown_and_the_terminal_restored():
    events = [start_event(), step_event(1),
              WarningEvent(step=2, message="loss became nan at step 2; the last good "
                                           "checkpoint is None"),
              StopEvent(step=1, status="nan", reason="loss became nan at step 2")]
    dashboard, out = drive(events)
    text = "\n".join(frame(dashboard))
    assert "tiny-demo · nan" in text and "stop  nan: loss became nan" in text
    assert "step 2: loss became nan" in text
    assert not dashboard.live.is_started
    assert out.getvalue().rstrip().endswith(SHOW_CURSOR)


def test_larger_terminal_gets_a_taller_chart():
    small, _ = drive(stream())
    big, _ = drive(stream(), width=160, height=50)
    small_lines, big_lines = frame(small), frame(big, 160, 50)
    assert len(big_lines) == 49 and max(len(line) for line in big_lines) == 160
    chart_rows = [sum("▕" in line for line in lines) for lines in (small_lines, big_lines)]
    assert chart_rows[1] > 2 * chart_rows[0]


def test_a_redraw_shows_new_events_and_the_clock_ticks_between_steps():
    clock = FakeClock()
    dashboard = Dashboard(Console(file=FakeTerminal(), width=80, height=24, force_terminal=True),
                          clock=clock)
    with dashboard:
        dashboard(start_event())
        dashboard(step_event(1))
        assert "1/100" in "\n".join(frame(dashboard))
        dashboard(step_event(2))
        first = "\n".join(frame(dashboard))
        assert "2/100" in first and "elapsed 0:00:01" in first
        clock.now += 65  # a long step: no event, but the elapsed clock moves on
        assert "elapsed 0:01:06" in "\n".join(frame(dashboard))


def settled(dashboard: Dashboard, timeout: float = 10.0) -> bool:
    """Wait until the redraw thread has drawn everything there is to draw."""
    deadline = time.monotonic() + timeout
    while dashboard.view.stale():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_redraws_are_bounded_and_skip_frames_that_would_not_change():
    clock, frames = FakeClock(), []
    dashboard = Dashboard(Console(file=FakeTerminal(), width=80, height=24, force_terminal=True),
                          max_fps=20, clock=clock)
    draw = dashboard.live.refresh
    dashboard.live.refresh = lambda: (frames.append(time.monotonic()), draw())
    with dashboard:
        dashboard(start_event())
        dashboard(step_event(1))
        assert settled(dashboard)
        before = len(frames)
        time.sleep(0.5)  # nothing changed and the clock stood still: no redraw
        assert len(frames) == before
        began = time.monotonic()
        for i in range(2, 2000):  # a burst of fast steps
            dashboard(step_event(i, total=2000))
        assert settled(dashboard)
        burst = len(frames) - before
        assert 1 <= burst <= (time.monotonic() - began) * 20 + 1
        clock.now += 1.0  # the elapsed clock moves on: one more frame
        assert settled(dashboard)
        assert len(frames) == before + burst + 1
    assert "1999/2000" in "\n".join(frame(dashboard))


@pytest.mark.parametrize("error", [RuntimeError("backend failed"), KeyboardInterrupt()])
def test_the_terminal_is_restored_when_the_run_raises(error):
    """An exception or a second Ctrl-C (KeyboardInterrupt) leaves no hidden cursor and no
    redirected stdout behind."""
    out = FakeTerminal()
    before = sys.stdout
    with pytest.raises(type(error)):
        with console_listener(10, stream=out) as listener:
            assert isinstance(listener, Dashboard)
            listener(start_event())
            listener(step_event(1))
            assert sys.stdout is not before  # Live redirects prints above the display
            raise error
    assert sys.stdout is before
    assert not listener.live.is_started
    raw = out.getvalue()
    assert raw.count(HIDE_CURSOR) == 1 and raw.rstrip().endswith(SHOW_CURSOR)
    assert "1/100" in raw  # the final frame was drawn before the cursor came back


def test_non_terminals_and_no_dashboard_get_plain_lines():
    pipe = io.StringIO()
    assert not wants_dashboard(pipe)
    assert not wants_dashboard(FakeTerminal(), no_dashboard=True)
    assert wants_dashboard(FakeTerminal())
    with console_listener(20, stream=pipe) as listener:
        assert isinstance(listener, PlainLog)
        for e in stream(steps=40):
            listener(e)
        listener(StopEvent(step=40, status="completed", reason="finished 40 steps"))
    lines = pipe.getvalue().splitlines()
    assert lines[0].startswith("start recipe=tiny-demo model=models/tiny-qwen2")
    assert [line.split()[0] for line in lines if line.startswith("step=")] == \
        ["step=20/100", "step=40/100"]
    assert "\x1b" not in pipe.getvalue()
    assert lines[-1] == "stop step=40 status=completed reason='finished 40 steps'"
    with console_listener(20, no_dashboard=True, stream=FakeTerminal()) as listener:
        assert isinstance(listener, PlainLog)


# ---------------------------------------------------------------------- the numbers behind it

def test_smoothing_eta_and_tokens_per_second():
    state = RunState()
    state.update(start_event(total=10), now=0.0)
    for i, (tokens, seconds) in enumerate([(100, 1.0), (300, 1.0), (100, 1.0)], start=1):
        e = step_event(i, total=10, step_time=seconds)
        e.tokens, e.elapsed = tokens, 1.5 * i  # 0.5 s of eval/saving between steps
        state.update(e, now=float(i))
    assert state.tokens_per_sec() == pytest.approx(state.tokens_avg.value / 1.0)
    assert 100 < state.tokens_per_sec() < 300
    # ETA uses the wall time between steps (1.5 s, evals included), not the step time
    assert state.eta() == pytest.approx(7 * state.wall_avg.value)
    assert 1.0 < state.wall_avg.value <= 1.5
    assert state.elapsed(now=5.0) == pytest.approx(4.5 + 2.0)
    assert state.loss_avg.value == pytest.approx(step_event(1).loss, rel=0.1)


def test_history_keeps_a_bounded_number_of_points():
    history = History(cap=64)
    for step in range(1, 10_001):
        history.add(step, float(step))
    assert 32 <= len(history) < 64
    steps = [s for s, _ in history.points]
    assert steps == sorted(steps) and history.points[-1][1] > 9000


def test_columns_follow_steps():
    ten = by_step([(s, float(s)) for s in range(1, 11)], 0, 10, 70)
    assert ten[:7] == [1.0] * 7 and ten[-7:] == [10.0] * 7
    half = by_step([(s, 1.0) for s in range(1, 6)], 0, 10, 20)
    assert half[:10] == [1.0] * 10 and half[10:] == [None] * 10
    many = by_step([(s, float(s)) for s in range(1, 1001)], 0, 1000, 10)
    assert many[0] == pytest.approx(50.5) and many[-1] == pytest.approx(950.5)
    rows = block_chart([0.0, 0.5, 1.0, None], 2, 0.0, 1.0)
    assert rows == [" ▁█ ", "▁██ "]  # levels 1, 9 and 16 of 16
    assert sparkline([0.0, 1.0, None], 0.0, 1.0) == "▁█ "


def test_resume_keeps_the_loss_history_from_metrics_jsonl(tmp_path):
    """On --resume the chart continues: the earlier steps come from the run's metrics.jsonl."""
    import dataclasses
    import json

    lines = [{"event": "train", "step": s, "loss": 5.0 - s / 10} for s in range(1, 11)]
    lines += [{"event": "eval", "step": 10, "val_loss": 4.2}, {"event": "start", "step": None},
              {"event": "train", "step": 11, "loss": 9.9}]  # past the checkpoint: ignored
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    state = RunState()
    state.update(dataclasses.replace(start_event(start_step=10), run_dir=str(tmp_path)), 0.0)
    assert state.train_loss.points == [(s, 5.0 - s / 10) for s in range(1, 11)]
    assert state.val_loss.points == [(10, 4.2)]
    state.update(step_event(11), 1.0)
    assert len(state.train_loss) == 11
    fresh = RunState()
    fresh.update(dataclasses.replace(start_event(), run_dir=str(tmp_path)), 0.0)
    assert len(fresh.train_loss) == 0  # a new run starts empty, whatever the folder holds
