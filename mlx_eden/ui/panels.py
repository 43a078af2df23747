"""The dashboard's five panels, each a function of a RunState snapshot.

Everything here formats numbers it is handed; nothing reads the clock except through `now`, so
a synthetic event stream renders the same text every time.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.text import Text

from ..objectives import describe
from .runstate import RunState
from .textchart import block_chart, by_step, sparkline

DASH = "—"
STATUS_STYLE = {"running": "cyan", "completed": "green", "early_stopped": "green",
                "interrupted": "yellow", "nan": "red", "error": "red"}


def clock(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def num(value: float | None, fmt: str, unit: str = "") -> str:
    return DASH if value is None else f"{value:{fmt}}{unit}"


LABEL = 8  # width of the dim label column


def row(label: str, *parts) -> Text:
    """One label/value line, cropped with an ellipsis rather than wrapped. Plain Text lines
    instead of Table grids: a frame renders several times faster, which keeps the redraw cost
    negligible next to a training step."""
    return Text.assemble((f"{label:<{LABEL}}", "dim"), *parts, no_wrap=True,
                         overflow="ellipsis")


class BarLine:
    """`label head ━━━━━━╸     tail`: a bar filling the width the panel has left."""

    def __init__(self, label: str, head: str, fraction: float, tail: Text | str = "",
                 style: str = "bar.complete"):
        self.label, self.head, self.tail, self.style = label, head, tail, style
        self.fraction = min(max(fraction, 0.0), 1.0)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        tail = Text(self.tail) if isinstance(self.tail, str) else self.tail
        width = options.max_width - LABEL - len(self.head) - len(tail) - 2
        if width < 4:
            yield row(self.label, self.head, " ", tail)
            return
        halves = round(self.fraction * width * 2)
        bar = "━" * (halves // 2) + ("╸" if halves % 2 else "")
        rest = "─" * (width - len(bar))
        yield row(self.label, self.head, " ", (bar, self.style), (rest, "bar.back"), " ", tail)


def status_of(s: RunState) -> str:
    return s.stop.status if s.stop else "running" if s.start else "starting"


def header(s: RunState) -> Panel:
    st = s.start
    status = status_of(s)
    title = Text.assemble(("mlx-eden", "bold"), " · ", (st.recipe_name if st else DASH, "bold"),
                          " · ", (status, STATUS_STYLE.get(status, "")))
    body = Group(
        row("model", st.model if st else DASH, ("   adapter ", "dim"), st.adapter if st else DASH),
        row("backend", f"{st.backend} on {st.device}" if st else DASH),
    )
    return Panel(body, title=title, title_align="left", subtitle=st.run_dir if st else None,
                 subtitle_align="right", border_style="blue")


def progress(s: RunState, now: float) -> Panel:
    total, step = s.total_steps, s.current_step
    resumed = s.start.start_step if s.start and s.start.start_step else 0
    opt = f"opt steps {step}" + (f" ({s.steps_this_session} since resume)" if resumed else "")
    body = Group(
        BarLine("step", f"{step}/{total or DASH}", step / total if total else 0.0,
                f"{100 * step / total:.0f}%" if total else ""),
        row("epoch", num(s.step.epoch if s.step else None, ".2f"), "   ", (opt, "dim")),
        row("elapsed", clock(s.elapsed(now)), ("   ETA ", "dim"), clock(s.eta())),
        _reference_or_speed(s),
    )
    return Panel(body, title="progress", title_align="left", border_style="blue")


def _reference_or_speed(s: RunState):
    """The DPO/KTO reference pass has its own bar until the first step; then tok/s."""
    ref = s.reference
    if ref is not None and s.step is None:
        fraction = ref.done / ref.total if ref.total else 1.0
        return BarLine("ref", f"{ref.done}/{ref.total}", fraction,
                       "cached" if ref.cached else f"{100 * fraction:.0f}%")
    return row("tok/s", num(s.tokens_per_sec(), ",.0f"), (" trained, smoothed", "dim"))


def _memory_style(fraction: float | None) -> str:
    if fraction is None:
        return "cyan"
    return "red" if fraction >= 0.9 else "yellow" if fraction >= 0.75 else "green"


def memory(s: RunState) -> Panel:
    fraction, budget, peak = s.memory_fraction(), s.budget_gb(), s.peak_gb()
    style = _memory_style(fraction)
    predicted = s.predicted_gb()
    versus = f" ({100 * peak / predicted:.0f}% of plan)" if predicted and peak is not None else ""
    if budget:
        budget_line = BarLine("budget", num(budget, ".1f", " GiB"), fraction or 0.0,
                              Text(f"{100 * (fraction or 0):.0f}%", style), style)
    else:
        budget_line = row("budget", DASH, ("  (no budget known)", "dim"))
    body = Group(
        row("active", num(s.active_gb(), ".2f", " GiB")),
        row("peak", (num(peak, ".2f", " GiB"), f"bold {style}"), versus),
        row("planner", num(predicted, ".2f", " GiB"), (" predicted peak", "dim")),
        budget_line,
    )
    return Panel(body, title="memory", title_align="left",
                 border_style="red" if s.under_pressure() else "blue")


class LossChart:
    """A stats line, then the train loss as a column chart over the whole run's steps (it fills
    left to right as the run progresses) in whatever space the layout gives it, then the
    validation losses on the same scale, each under its step. Holds copies of the points, so
    drawing needs no lock while the loop keeps emitting."""

    GUTTER = 8

    def __init__(self, stats: Text, train: list[tuple[float, float]],
                 val: list[tuple[float, float]], start: int, end: int):
        self.stats, self.train, self.val = stats, train, val
        self.start, self.end = start, end

    def _row(self, label: str, text: str, style: str) -> Text:
        return Text.assemble((f"{label:>{self.GUTTER - 2}} ▕", "dim"), (text, style))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.stats
        width = max(options.max_width - self.GUTTER, 4)
        height = max((options.height or 4) - 2, 1)  # minus the stats and val rows
        if not self.train:
            yield Text("waiting for the first step…", "dim")
            return
        values = [v for _, v in self.train + self.val]
        lo, hi = min(values), max(values)
        end = max(self.end, int(self.train[-1][0]))
        rows = block_chart(by_step(self.train, self.start, end, width), height, lo, hi)
        for i, line in enumerate(rows):
            label = f"{hi:.4g}" if i == 0 else f"{lo:.4g}" if i == len(rows) - 1 else ""
            yield self._row(label, line, "cyan")
        val = sparkline(by_step(self.val, self.start, end, width), lo, hi) if self.val else DASH
        yield self._row("val", val, "magenta")


def loss(s: RunState) -> Panel:
    e = s.step
    stats = Text.assemble(
        ("loss ", "dim"), (num(e.loss if e else None, ".4f"), "bold"),
        ("  smoothed ", "dim"), num(s.loss_avg.value, ".4f"),
        ("  lr ", "dim"), num(e.lr if e else None, ".2e"),
        ("  grad norm ", "dim"), num(e.grad_norm if e else None, ".3f"),
        no_wrap=True, overflow="ellipsis")
    start = s.start.start_step if s.start else 0
    chart = LossChart(stats, list(s.train_loss.points), list(s.val_loss.points), start,
                      s.total_steps or 0)
    return Panel(chart, title="loss: train (cyan), val (magenta)", title_align="left",
                 border_style="blue")


def _eval_line(s: RunState) -> Text:
    ev = s.last_eval
    if ev is None:
        return Text.assemble(("eval  ", "dim"), DASH)
    mark = ("improved", "green") if ev.improved else ("no improvement", "yellow")
    patience = "" if ev.patience_left is None else f" · patience {ev.patience_left} left"
    # perplexity last: on a narrow terminal it is the part cropped
    tail = f"rewards {describe(ev.metrics)}" if ev.metrics else f"ppl {ev.val_ppl:.1f}"
    return Text.assemble(("eval  ", "dim"), f"step {ev.step}: val {ev.val_loss:.4f} ", mark,
                         f" · best {ev.best_val_loss:.4f}{patience} · {tail}")


def _sample_line(s: RunState) -> Text | None:
    """The newest eval.samples answer (the last sample of the last evaluation), on one line."""
    if s.samples is None or not s.samples.samples:
        return None
    sample = s.samples.samples[-1]
    style = f"[{sample['style']}] " if sample["style"] else ""
    answer = " ".join(sample["answer"].split()) or "(empty)"  # newlines would break the row
    return Text.assemble(("sample", "dim"), f" step {s.samples.step} {style}",
                         (f"{sample['prompt']} → ", "dim"), answer)


def _save_line(s: RunState) -> Text:
    ck, best = s.last_checkpoint, s.last_best
    line = Text("saved ", "dim")
    line.append(f"checkpoint step {ck.step}" if ck else DASH)
    if best is not None:
        line.append(f" (best adapter step {best.step})", "green")
    if ck is not None:
        line.append(f" → {ck.path}")
    return line


def events(s: RunState) -> Panel:
    lines = [_eval_line(s), *filter(None, [_sample_line(s)]), _save_line(s)]
    if s.stop is not None:
        status = s.stop.status
        lines.insert(0, Text.assemble(("stop  ", "dim"), (status, STATUS_STYLE.get(status, "")),
                                      f": {s.stop.reason}"))
    if s.under_pressure():
        lines.append(Text(f"⚠ memory pressure: peak at {100 * s.memory_fraction():.0f}% of the "
                          f"budget", "red"))
    for w in reversed(s.warnings):  # newest first; the panel crops what does not fit
        lines.append(Text(f"⚠ step {w.step}: {w.message}", "yellow"))
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return Panel(Group(*lines), title="events", title_align="left", border_style="blue")
