"""What the in-process step-time A/Bs share (blockwise_wait_ab.py, loss_hold_ab.py,
packed_mask_ab.py): both variants timed the same way, the order alternated every round, and
the summary (medians, spread, and the paired B/A ratio of each round's adjacent steps, whose
spread is what "no change" looks like on this machine). Not a benchmark itself (`make bench` skips `_*.py`)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path


def alternate(step: Callable[[str], float], variants: list[str], rounds: int,
              warmup: int = 2) -> dict[str, list[float]]:
    """{variant: seconds of each timed step}: `warmup` untimed steps of each first (optimizer
    state, compilation), then `rounds` rounds in the order A B, B A, A B, ..."""
    for v in variants:
        for _ in range(warmup):
            step(v)
    times = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            times[v].append(step(v))
    return times


def summarize(times: dict[str, list[float]], a: str, b: str) -> dict:
    """Per variant median/min/max/all in ms, the ratio of medians B/A and the paired ratios."""
    out = {}
    for v, ts in times.items():
        ms = sorted(t * 1e3 for t in ts)
        out[v] = {"median_ms": round(statistics.median(ms), 1), "min_ms": round(ms[0], 1),
                  "max_ms": round(ms[-1], 1), "all_ms": [round(t * 1e3, 1) for t in ts]}
    out["ratio_B_over_A_median"] = round(out[b]["median_ms"] / out[a]["median_ms"], 3)
    pairs = sorted(y / x for x, y in zip(times[a], times[b], strict=True))
    q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
    out["paired_ratio"] = {"median": round(statistics.median(pairs), 3),
                           "q1": round(q[0], 3), "q3": round(q[2], 3),
                           "all": [round(x, 3) for x in pairs]}
    return out


def pooled(runs: list[dict]) -> dict:
    """Per model, every run's paired B/A ratios together: median, min, max, count."""
    got: dict[str, list[float]] = {}
    for r in runs:
        for m, res in r["models"].items():
            got.setdefault(m, []).extend(res["paired_ratio"]["all"])
    return {m: {"paired_ratio_median": round(statistics.median(x), 3),
                "paired_ratio_min": min(x), "paired_ratio_max": max(x), "pairs": len(x)}
            for m, x in got.items()}


def write_json(path: Path, data: dict) -> None:
    """Write through a temp name, then rename: a stopped run never leaves half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
