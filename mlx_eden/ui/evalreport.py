"""The HTML report's evaluation section: the suites' metrics and gates from RUN_DIR/eval/
summary.json, and a bar chart of value vs baseline for every gated metric (inline SVG, like the
report's line charts in svg.py)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from .svg import fmt

PASS, FAIL, BASE = "#2ca02c", "#d62728", "#b9bfca"


def read_summary(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "eval" / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def gate_bars(summary: dict, width: int = 560) -> str:
    """One row per gate: its value (green pass / red fail) over its baseline (grey), each row
    scaled to its own largest figure, since gated metrics have unrelated units."""
    gates = [g for g in summary.get("gates", []) if isinstance(g.get("value"), (int, float))]
    row, left, top = 34, 170, 30
    height = top + row * max(len(gates), 1) + 10
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="gates"><title>gates</title>'
           f'<text x="8" y="14" class="title">Gated metrics: value vs baseline</text>']
    span = width - left - 70
    for i, g in enumerate(gates):
        y = top + i * row
        base = g.get("baseline")
        top_value = max(abs(g["value"]), abs(base) if isinstance(base, (int, float)) else 0,
                        1e-12)
        w = span * abs(g["value"]) / top_value
        out.append(f'<text x="8" y="{y + 14}">{escape(g["metric"])}</text>'
                   f'<rect x="{left}" y="{y}" width="{w:.1f}" height="12" '
                   f'fill="{PASS if g["passed"] else FAIL}"/>'
                   f'<text x="{left + w + 4:.1f}" y="{y + 10}">{fmt(g["value"])}</text>')
        if isinstance(base, (int, float)):
            wb = span * abs(base) / top_value
            out.append(f'<rect x="{left}" y="{y + 14}" width="{wb:.1f}" height="8" '
                       f'fill="{BASE}"/><text x="{left + wb + 4:.1f}" y="{y + 22}" '
                       f'class="label">baseline {fmt(base)}</text>')
    return "".join(out) + "</svg>"


def eval_section(run_dir: Path) -> dict | None:
    """What the template shows: rows of (suite, metric, value, baseline, gate, verdict), the
    verdict and the chart; None when the run was never evaluated with suites."""
    summary = read_summary(run_dir)
    if summary is None:
        return None
    gates = {g["metric"]: g for g in summary.get("gates", [])}
    base = summary.get("baseline") or {}
    rows = []
    for suite, metrics in summary.get("suites", {}).items():
        for metric, value in metrics.items():
            g = gates.get(f"{suite}.{metric}")
            b = base.get(suite, {}).get(metric)
            rows.append({"suite": suite, "metric": metric, "value": fmt(value),
                         "baseline": "—" if b is None else fmt(b),
                         "gate": g["condition"] if g else "",
                         "verdict": "" if g is None else ("PASS" if g["passed"] else "FAIL")})
    return {"rows": rows, "passed": summary.get("passed"), "gates": len(gates),
            "baseline": summary.get("baseline_source"), "chart": gate_bars(summary)}
