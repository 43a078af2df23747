"""`eden-mlx report`: one self-contained HTML file (inline CSS and SVG, no scripts, no network)
and a short summary table in the terminal, for one run or several overlaid."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import jinja2
import yaml
from markupsafe import Markup
from rich import box
from rich.console import Console
from rich.table import Table

from ..safeio import atomic_file
from .evalreport import eval_section
from .panels import clock, num
from .rundata import RunRecord, load_runs
from .runstate import Smoothed
from .svg import PALETTE, HLine, Series, line_chart


def smoothed(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The same bias-corrected moving average the dashboard shows."""
    average = Smoothed()
    return [(x, average.add(y)) for x, y in points]


def _xy(records: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in records if r.get(key) is not None]


def reward_series(runs: list[RunRecord]) -> list[Series]:
    """DPO/KTO runs: each validation metric (rewards, accuracy, margin, KL) over the steps."""
    out = []
    for i, run in enumerate(runs):
        name = f"{run.label} " if len(runs) > 1 else ""
        keys = sorted({k for e in run.evals for k in e.get("metrics", {})})
        for j, key in enumerate(keys):
            points = [(e["step"], e["metrics"][key]) for e in run.evals
                      if key in e.get("metrics", {})]
            out.append(Series(f"{name}{key}", points, PALETTE[(i + j) % len(PALETTE)],
                              dashed=i > 0, markers=True))
    return out


def charts(runs: list[RunRecord]) -> list[str]:
    """Loss, learning rate, tokens/sec and memory; one colour per run when comparing."""
    many = len(runs) > 1
    loss, lr, speed, memory, hlines = [], [], [], [], []
    for i, run in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        name = f"{run.label} " if many else ""
        train = _xy(run.train, "loss")
        loss += [Series(f"{name}train", train, color, faint=True),
                 Series(f"{name}train (smoothed)", smoothed(train), color),
                 Series(f"{name}val", _xy(run.evals, "val_loss"), color, dashed=True,
                        markers=True)]
        lr.append(Series(f"{name}lr".strip(), _xy(run.train, "lr"), color))
        tps = [(t["step"], t["tokens"] / t["step_time"]) for t in run.train
               if t.get("step_time")]
        speed.append(Series(f"{name}smoothed".strip(), smoothed(tps), color))
        mem = run.memory_points()
        memory.append(Series(f"{name}peak".strip(), mem.get("peak", []), color))
        if mem.get("active"):
            memory.append(Series(f"{name}active".strip(), mem["active"], color, dashed=True))
        if run.budget_gb is not None:
            hlines.append(HLine(run.budget_gb, f"{name}budget".strip(), "#d62728"))
        if run.predicted_peak_gb is not None:
            hlines.append(HLine(run.predicted_peak_gb, f"{name}planner".strip(), "#7f7f7f"))
    rewards = reward_series(runs)
    return [
        line_chart("Loss", loss, y_label="loss"),
        *([line_chart("Preference rewards (validation)", rewards, y_label="reward")]
          if rewards else []),
        line_chart("Learning rate", lr, y_label="lr"),
        line_chart("Trained tokens / second", speed, y_label="tokens/s", zero=True),
        # reach 3: a budget 200x a tiny run's peak would flatten its curve onto the axis.
        line_chart("Memory (GiB)", memory, hlines=_distinct(hlines), y_label="GiB", zero=True,
                   reach=3.0),
    ]


def _distinct(hlines: list[HLine]) -> list[HLine]:
    """One line per value and colour: compared runs on one machine share one budget line
    (labelled without a run name) instead of drawing the same line and label twice."""
    groups: dict[tuple, list[HLine]] = {}
    for h in hlines:
        groups.setdefault((round(h.y, 3), h.color), []).append(h)
    return [g[0] if len(g) == 1 else
            HLine(g[0].y, g[0].label.rsplit(" ", 1)[-1], g[0].color, g[0].dashed)
            for g in groups.values()]


def summary_rows(runs: list[RunRecord]) -> list[dict]:
    """The figures of the summary table, formatted once for both the terminal and the page."""
    rows = []
    for run in runs:
        s = run.summary()
        best = "—" if s["best_val_loss"] is None else \
            f"{s['best_val_loss']:.4f} @{s['best_step']}"
        # short keys: the terminal table must fit 80 columns
        rows.append({"run": s["run"], "status": s["status"], "steps": s["steps"],
                     "loss": num(s["train_loss"], ".4f"), "best val": best,
                     "tok/s": num(s["tokens_per_sec"], ",.0f"),
                     "peak GiB": num(s["peak_gb"], ".2f"), "time": clock(s["elapsed"])})
    return rows


def render_html(runs: list[RunRecord]) -> str:
    template = resources.files("mlx_eden").joinpath("assets/report.html.j2").read_text()
    # lenient: run.json of an older or killed run may lack a key; the page shows it empty
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(template).render(
        title=" vs ".join(r.label for r in runs), rows=summary_rows(runs),
        charts=[Markup(svg) for svg in charts(runs)],  # our own escaped SVG
        runs=[{"label": r.label, "info": r.info, "evals": r.evals,
               "warnings": r.of("warning"), "samples": r.of("samples"), "stop": (r.of("stop") or [None])[-1],
               "suites": _suites(r.path),
               "recipe": yaml.safe_dump(r.info.get("recipe", {}), sort_keys=False)}
              for r in runs],
        generated=time.strftime("%Y-%m-%d %H:%M:%S"))


def _suites(path: Path) -> dict | None:
    section = eval_section(path)
    if section is not None:
        section["chart"] = Markup(section["chart"])  # our own escaped SVG
    return section


def print_summary(runs: list[RunRecord], console: Console) -> None:
    rows = summary_rows(runs)
    table = Table(title="run summary", box=box.SIMPLE_HEAD, padding=(0, 1))
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("run", "status") else "right")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


def default_output(run_dirs: list[str]) -> Path:
    return Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1 else Path("report.html")


def make_report(run_dirs: list[str], output: str | None = None,
                console: Console | None = None) -> Path:
    """Read the runs, write the HTML report, print the summary; return the report's path."""
    runs = load_runs(run_dirs)
    path = Path(output) if output else default_output(run_dirs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:  # a reader never sees half a report
        tmp.write_text(render_html(runs), encoding="utf-8")
    # In a pipe or a log Rich assumes 80 columns and squeezes the table into "tiny-de…";
    # nothing there needs the terminal's width.
    console = console or (Console() if Console().is_terminal else Console(width=120))
    print_summary(runs, console)
    console.print(f"report: {path}")
    return path
