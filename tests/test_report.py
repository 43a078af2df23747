"""`eden-mlx report` on run directories laid out as `eden-mlx train` writes them: one page, inline
SVG, overlays when comparing, memory with budget and planner lines, clear errors."""

from __future__ import annotations

import html.parser
import io
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from mlx_eden.errors import UserError
from mlx_eden.ui.report import make_report
from mlx_eden.ui.rundata import load_runs
from mlx_eden.ui.svg import PALETTE, fmt, nice_ticks

from .conftest import run_cli


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def check_self_contained(page: str) -> None:
    """Parses, draws its charts as inline SVG, and refers to nothing outside itself."""
    parser = _Tags()
    parser.feed(page)
    parser.close()
    names = [tag for tag, _ in parser.tags]
    assert names.count("svg") == 4 and names.count("polyline") >= 4
    assert not {"script", "link", "img", "iframe"} & set(names)
    assert "http:" not in page and "https:" not in page and "url(" not in page
    assert all("src" not in attrs and "href" not in attrs for _, attrs in parser.tags)


def write_run(root: Path, *, steps=30, lr=1e-3, status="completed", budget=None,
              predicted=None, memory=False, cut_last_line=False) -> Path:
    """A run directory with run.json and metrics.jsonl (and memory.jsonl) as train writes them."""
    root.mkdir(parents=True)
    info = {"recipe": {"name": "tiny-demo", "train": {"learning_rate": lr}},
            "versions": {"python": "3.11.7", "mlx": "0.32.4"}, "backend": "mlx",
            "backend_reason": "requested", "device": "cpu",
            "model": {"path": "models/tiny", "model_type": "qwen2", "params_total": 1000,
                      "trainable_params": 100},
            "data": {"data/train.jsonl": "ab" * 32}, "git_commit": None, "argv": ["eden-mlx"],
            "platform": "Linux", "started": "2026-01-01T00:00:00", "ended": None,
            "status": status}
    if budget is not None:
        info["budget_gb"], info["predicted_peak_gb"] = budget, predicted
    (root / "run.json").write_text(json.dumps(info))
    lines = [{"event": "start", "total_steps": steps, "start_step": 0}]
    for s in range(1, steps + 1):
        lines.append({"event": "train", "step": s, "epoch": s / 10,
                      "loss": 3 * math.exp(-lr * 100 * s) + 1, "lr": lr, "grad_norm": 0.5, "tokens": 500, "trained_tokens_per_sec": 1000,
                      "step_time": 0.5, "peak_memory_gb": 0.3 + s / 1000, "total_steps": steps,
                      "elapsed": 0.5 * s})
        if s % 10 == 0:
            lines.append({"event": "eval", "step": s, "val_loss": 3 * math.exp(-lr * 90 * s) + 1.1,
                          "val_ppl": 9.0, "val_tokens": 100, "best_val_loss": 1.5,
                          "improved": True, "patience_left": 2})
    lines.append({"event": "warning", "step": 0, "message": "2 training samples truncated"})
    lines.append({"event": "stop", "step": steps, "status": status, "reason": "finished",
                  "extra": {"elapsed": 0.5 * steps}})
    text = "".join(json.dumps(x) + "\n" for x in lines)
    (root / "metrics.jsonl").write_text(text + ('{"event": "tra' if cut_last_line else ""))
    if memory:
        (root / "memory.jsonl").write_text("".join(
            json.dumps({"step": s, "phase": "step", "active_gb": 0.2, "peak_gb": 0.25 + s / 100,
                        "cache_gb": 0.0, "rss_gb": 0.5}) + "\n" for s in range(1, steps + 1)))
    return root


def charts_of(page: str) -> dict[str, str]:
    return dict(re.findall(r'<svg class="chart".*?<title>(.*?)</title>(.*?)</svg>', page, re.S))


def test_one_run_report_and_summary(tmp_path):
    run = write_run(tmp_path / "a", budget=2.0, predicted=1.5, memory=True)
    console = Console(file=io.StringIO(), width=100)
    out = make_report([str(run)], console=console)
    assert out == run / "report.html"
    page = out.read_text()
    check_self_contained(page)
    charts = charts_of(page)
    assert list(charts) == ["Loss", "Learning rate", "Trained tokens / second", "Memory (GiB)"]
    assert ">train (smoothed)<" in charts["Loss"] and ">val<" in charts["Loss"]
    assert charts["Loss"].count("<circle") == 3  # one marker per evaluation
    memory = charts["Memory (GiB)"]
    # The budget (2 GiB) is 6x the 0.33 GiB peak: labelled at the top edge, off the axis, so
    # the run's own curve keeps the chart's height instead of lying flat on zero.
    assert ">budget 2 \u2191 (off scale)<" in memory
    assert ">planner 1.5<" in memory and ">active<" in memory
    assert "ab" * 32 in page and "learning_rate: 0.001" in page and "0.32.4" in page
    assert "2 training samples truncated" in page and "patience left" in page
    summary = console.file.getvalue()
    assert "run summary" in summary and "30/30" in summary and "completed" in summary
    assert "0:00:15" in summary and "1,000" in summary  # 500 tokens per 0.5 s step


def test_comparing_runs_overlays_their_curves(tmp_path):
    a = write_run(tmp_path / "x" / "run", lr=1e-3)
    b = write_run(tmp_path / "y" / "run", lr=3e-3, status="interrupted", cut_last_line=True)
    out = tmp_path / "cmp.html"
    make_report([str(a), str(b)], str(out), console=Console(file=io.StringIO()))
    page = out.read_text()
    check_self_contained(page)
    loss = charts_of(page)["Loss"]
    for label, color in (("x/run", PALETTE[0]), ("y/run", PALETTE[1])):
        assert f">{label} train (smoothed)<" in loss and f">{label} val<" in loss
        assert loss.count(f'stroke="{color}"') >= 3  # raw, smoothed and val lines, legend
    assert "Run x/run" in page and "Run y/run" in page and "status-interrupted" in page
    assert not list(tmp_path.glob(".cmp.html.tmp*"))


def test_memory_falls_back_to_the_per_step_peak(tmp_path):
    run = load_runs([str(write_run(tmp_path / "r", steps=5))])[0]
    assert run.memory_points() == {"peak": [(s, 0.3 + s / 1000) for s in range(1, 6)]}
    assert run.budget_gb is None and run.predicted_peak_gb is None


def test_cli_errors_are_one_line(tmp_path):
    proc = run_cli("report", tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "not a run directory (no run.json)" in proc.stderr
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(UserError, match="no metrics yet"):
        make_report([str(tmp_path)])


def test_ticks_are_round_numbers():
    assert nice_ticks(0.13, 0.91) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1, 400) == [0, 100, 200, 300, 400]
    assert [fmt(v) for v in (0, 2e-4, 0.5, 25000)] == ["0", "2e-04", "0.5", "25k"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install "
                    "chromium)")
def test_report_opens_in_headless_chromium(tmp_path):
    run = write_run(tmp_path / "a", budget=2.0, predicted=1.5, memory=True)
    out = make_report([str(run)], console=Console(file=io.StringIO()))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", out.as_uri()],
            capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == 4 and dom.count("<polyline") >= 5
    assert "Summary" in dom and "Resolved recipe" in dom


def _text_ys(svg: str, fill: str) -> list[float]:
    return [float(y) for y in re.findall(rf'<text x="[\d.]+" y="([\d.]+)" text-anchor="end" '
                                          rf'fill="{fill}"', svg)]


def test_memory_axis_follows_the_run_not_a_far_budget(tmp_path):
    from mlx_eden.ui.svg import HLine, Series, line_chart

    points = [(s, 0.1 + s / 1000) for s in range(1, 30)]
    far = line_chart("m", [Series("peak", points, "#000")], hlines=[HLine(22.7, "budget", "#f00")],
                     zero=True, reach=3.0)
    near = line_chart("m", [Series("peak", points, "#000")], hlines=[HLine(0.2, "budget", "#f00")],
                      zero=True, reach=3.0)
    def top_tick(svg):
        return max(float(t) for t in re.findall(r'text-anchor="end">([\d.]+)<', svg))

    assert top_tick(far) <= 0.2 and "budget 22.7 \u2191 (off scale)" in far
    assert 'stroke="#f00"' not in far
    assert 'stroke="#f00"' in near and top_tick(near) >= 0.2  # a near budget stays on the axis


def test_compared_runs_labels_do_not_overprint(tmp_path):
    a = write_run(tmp_path / "x" / "run", budget=0.5, predicted=0.34, memory=True)
    b = write_run(tmp_path / "y" / "run", budget=0.5, predicted=0.345, memory=True)
    out = tmp_path / "cmp.html"
    make_report([str(a), str(b)], str(out), console=Console(file=io.StringIO()))
    memory = charts_of(out.read_text())["Memory (GiB)"]
    assert memory.count(">budget 0.5<") == 1  # one shared budget line, not two on top
    ys = sorted(_text_ys(memory, "#7f7f7f") + _text_ys(memory, "#d62728"))
    assert len(ys) == 3 and all(b - a >= 12 for a, b in zip(ys, ys[1:], strict=False))
