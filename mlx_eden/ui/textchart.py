"""Charts made of block characters for the terminal dashboard.

Rich has no sparkline or chart, and a plotting library for a few dozen glyphs would cost more
to import than these functions cost to run, so they are written here.
"""

from __future__ import annotations

BLOCKS = " ▁▂▃▄▅▆▇█"  # index = eighths of a cell filled

Column = float | None  # None: no data for that column (yet)


def by_step(points: list[tuple[float, float]], start: float, end: float,
            width: int) -> list[Column]:
    """Place (step, value) points on `width` columns spanning the steps after `start` up to
    `end`: step s owns the columns of (s-1, s], so 10 steps on 70 columns draw as 10 bars of 7
    and 1,000 steps on 70 columns average about 14 steps a column. Columns past the last point
    stay empty (the run has not got there)."""
    sums, counts = [0.0] * width, [0] * width
    scale = width / max(end - start, 1e-9)
    for step, value in points:
        lo = min(max(int((step - 1 - start) * scale), 0), width - 1)
        hi = min(max(int((step - start) * scale), lo + 1), width)
        for col in range(lo, hi):
            sums[col] += value
            counts[col] += 1
    return [s / n if n else None for s, n in zip(sums, counts, strict=True)]


def level(value: float, lo: float, hi: float, steps: int) -> int:
    """1..steps: the lowest value still gets one step, so every point is visible."""
    fraction = (value - lo) / (hi - lo) if hi > lo else 0.5
    return 1 + round(min(max(fraction, 0.0), 1.0) * (steps - 1))


def sparkline(columns: list[Column], lo: float, hi: float) -> str:
    """One row of ▁..█, a space where a column has no value."""
    return "".join(" " if v is None else BLOCKS[level(v, lo, hi, 8)] for v in columns)


def block_chart(columns: list[Column], height: int, lo: float, hi: float) -> list[str]:
    """`height` rows (top first) of a column chart with eighth-of-a-cell vertical resolution."""
    if height <= 1:
        return [sparkline(columns, lo, hi)]
    cells = []  # each column top to bottom: blank, one partial block, full blocks
    for v in columns:
        n = 0 if v is None else level(v, lo, hi, height * 8)
        full, part = divmod(n, 8)
        top = (BLOCKS[part] if part else "") if full < height else ""
        cells.append(" " * (height - full - len(top)) + top + "█" * min(full, height))
    return ["".join(row) for row in zip(*cells, strict=True)] if cells else [""] * height
