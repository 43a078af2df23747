"""Ship gates: `<suite>.<metric>` -> {min, max, max_drop, max_rise}, judged on the results and,
for the relative conditions, on the baseline. A gate that cannot be judged (no baseline for
max_drop, a metric missing) fails: a CI gate must never pass by default."""

from __future__ import annotations

_EPS = 1e-12  # float noise: a value equal to its bound passes


def judge(gates: dict, results: dict[str, dict], baseline: dict[str, dict] | None) -> list[dict]:
    """One row per gate whose suite ran: metric, value, baseline, condition, passed, reasons."""
    rows = []
    for path, g in gates.items():
        suite, _, metric = path.partition(".")
        if suite not in results:
            continue  # suite not selected in this evaluation (--suite)
        value = results[suite].get(metric)
        base = (baseline or {}).get(suite, {}).get(metric)
        why: list[str] = []
        if value is None:
            why.append("metric missing")
        else:
            if g.min is not None and value < g.min - _EPS:
                why.append(f"{value:.4g} < min {g.min:g}")
            if g.max is not None and value > g.max + _EPS:
                why.append(f"{value:.4g} > max {g.max:g}")
            for bound, sign, name in ((g.max_drop, 1, "max_drop"), (g.max_rise, -1, "max_rise")):
                if bound is None:
                    continue
                if base is None:
                    why.append(f"{name} needs a baseline (--baseline base|RUN_DIR|FILE.json)")
                elif sign * (base - value) > bound + _EPS:
                    why.append(f"changed {value - base:+.4g} vs baseline, {name} {bound:g}")
        rows.append({"metric": path, "value": value, "baseline": base,
                     "condition": g.describe(), "passed": not why, "reasons": why})
    return rows
