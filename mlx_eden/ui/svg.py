"""Line charts as inline SVG for the HTML report.

Hand-written because the report must be one self-contained file with no network and no
JavaScript: a plotting library would either be a heavy new dependency (matplotlib) or need a
script runtime in the page (plotly, vega). A line chart with nice ticks is ~150 lines of SVG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2"]
MAX_POINTS = 800  # per series; more points than pixels only make the file bigger


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str
    dashed: bool = False
    markers: bool = False
    faint: bool = False  # drawn light and left out of the legend (raw points under a smooth line)


@dataclass
class HLine:
    """A horizontal reference line, e.g. the memory budget or the planner's prediction."""

    y: float
    label: str
    color: str
    dashed: bool = True


def nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks covering lo..hi (1, 2, 2.5 or 5 times a power of ten apart)."""
    scale = max(abs(lo), abs(hi)) or 1.0
    if hi - lo < 1e-6 * scale:  # flat (or flat but for float noise): a band around it
        lo, hi = lo - 0.05 * scale, hi + 0.05 * scale
    step = nice_step(hi - lo, count)
    first = math.floor(lo / step)
    last = math.ceil(hi / step)
    return [round(i * step, 12) for i in range(first, last + 1)]


def fmt(value: float) -> str:
    """Short tick labels: 0.0002 -> 2e-04, 1500 -> 1.5k, 2.5 -> 2.5."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.0e}"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:.4g}"


def downsample(points: list[tuple[float, float]], limit: int = MAX_POINTS):
    """Bucket means, so a 100k-step run draws as a few hundred points of the same shape."""
    if len(points) <= limit:
        return points
    out = []
    for i in range(limit):
        bucket = points[i * len(points) // limit:(i + 1) * len(points) // limit]
        out.append((sum(p[0] for p in bucket) / len(bucket),
                    sum(p[1] for p in bucket) / len(bucket)))
    return out


class _Frame:
    """Maps data coordinates to the plot area of a chart."""

    def __init__(self, xs, ys, width, height, left=56, right=16, top=40, bottom=36):
        self.x_ticks = nice_ticks(min(xs), max(xs))
        self.y_ticks = nice_ticks(min(ys), max(ys))
        self.x0, self.x1 = self.x_ticks[0], self.x_ticks[-1]
        self.y0, self.y1 = self.y_ticks[0], self.y_ticks[-1]
        self.left, self.right = left, width - right
        self.top, self.bottom = top, height - bottom

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)


def _axes(f: _Frame, x_label: str, y_label: str) -> list[str]:
    out = []
    for t in f.y_ticks:
        y = f.y(t)
        out.append(f'<line x1="{f.left}" y1="{y:.1f}" x2="{f.right}" y2="{y:.1f}" '
                   f'class="grid"/><text x="{f.left - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{fmt(t)}</text>')
    for t in f.x_ticks:
        x = f.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{f.top}" x2="{x:.1f}" y2="{f.bottom}" '
                   f'class="grid"/><text x="{x:.1f}" y="{f.bottom + 16}" '
                   f'text-anchor="middle">{fmt(t)}</text>')
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.right - f.left}" '
               f'height="{f.bottom - f.top}" class="frame"/>')
    out.append(f'<text x="{(f.left + f.right) / 2:.1f}" y="{f.bottom + 32}" '
               f'text-anchor="middle" class="label">{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{(f.top + f.bottom) / 2:.1f}" text-anchor="middle" '
                   f'class="label" transform="rotate(-90 12 {(f.top + f.bottom) / 2:.1f})">'
                   f'{escape(y_label)}</text>')
    return out


def _series(f: _Frame, s: Series) -> list[str]:
    pts = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in downsample(s.points))
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    faint = ' stroke-opacity="0.3" stroke-width="1"' if s.faint else ' stroke-width="1.8"'
    out = [f'<polyline points="{pts}" fill="none" stroke="{s.color}"{faint}{dash}/>']
    if s.markers:
        out += [f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{s.color}"/>'
                for x, y in s.points[:200]]
    return out


LABEL_GAP = 13  # px between reference-line labels (the font is 11px): closer ones overprint


def _hlines(f: _Frame, hlines: list[HLine]) -> list[str]:
    """Reference lines inside the axis range, and one label each, stacked so that labels of
    lines a few pixels apart (two runs' budgets, a budget beside the planner) never overprint.
    A line above the axis (a 22 GB budget over a 0.1 GB run) is not drawn; its label sits at
    the top edge with an arrow, so the data keep the chart's height."""
    out, placed = [], []
    for h in sorted(hlines, key=lambda h: -h.y):
        above = h.y > f.y1
        y = f.top + 4 if above else f.y(h.y)
        if not above:
            dash = ' stroke-dasharray="3 3"' if h.dashed else ""
            out.append(f'<line x1="{f.left}" y1="{y:.1f}" x2="{f.right}" y2="{y:.1f}" '
                       f'stroke="{h.color}" stroke-width="1.4"{dash}/>')
        text_y = y - 4 if not above else y + 10
        for p in placed:  # top to bottom: push this one below any label it would touch
            if abs(text_y - p) < LABEL_GAP:
                text_y = p + LABEL_GAP
        placed.append(text_y)
        arrow = " \u2191 (off scale)" if above else ""
        out.append(f'<text x="{f.right - 4}" y="{text_y:.1f}" text-anchor="end" '
                   f'fill="{h.color}">{escape(h.label)} {fmt(h.y)}{arrow}</text>')
    return out


def _legend(items: list[tuple[str, str, bool]], left: int, right: int) -> tuple[list[str], int]:
    """Legend entries under the title, wrapped to the chart's width; returns (svg, rows)."""
    out, x, y = [], left, 26
    for label, color, dashed in items:
        size = 30 + 7 * len(label)
        if x > left and x + size > right:
            x, y = left, y + 16
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{x + 22}" y="{y + 4}">{escape(label)}</text>')
        x += size
    return out, (y - 26) // 16 + 1


def line_chart(title: str, series: list[Series], *, hlines: list[HLine] = (),
               x_label: str = "step", y_label: str = "", zero: bool = False, width: int = 560,
               height: int = 280, reach: float | None = None) -> str:
    """An <svg> element: the series as lines (dashed and/or with markers where asked), the
    reference lines across, a legend under the title. `zero` starts the y axis at 0 (for
    amounts like memory, where a zoomed axis would make 1% look like a cliff). `reach`: a
    reference line more than `reach` times the data's top does not stretch the axis (it is
    labelled at the top edge instead)."""
    series = [s for s in series if s.points]
    head = (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title><text x="8" y="14" class="title">{escape(title)}'
            f'</text>')
    if not series:
        return head + (f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                       f'class="label">no data</text></svg>')
    xs = [x for s in series for x, _ in s.points]
    data = [y for s in series for _, y in s.points]
    top = max(data)
    ys = data + [h.y for h in hlines if reach is None or top <= 0 or h.y <= reach * top] + \
        ([0.0] if zero else [])
    legend, rows = _legend([(s.label, s.color, s.dashed) for s in series if not s.faint], 56,
                           width - 16)
    f = _Frame(xs, ys, width, height, top=24 + 16 * rows)
    body = _axes(f, x_label, y_label)
    body += _hlines(f, list(hlines))
    for s in sorted(series, key=lambda s: not s.faint):  # faint ones underneath
        body += _series(f, s)
    return head + "".join(body + legend) + "</svg>"
