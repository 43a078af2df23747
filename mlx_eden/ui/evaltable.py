"""The terminal view of an evaluation: one row per metric (suite, metric, value, baseline, delta,
gate, verdict), then the failures worth reading and the overall verdict."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:.4g}" if isinstance(x, float) else str(x)  # 4 digits: 80 columns; JSON has all


def gate_table(summary: dict, title: str = "evaluation") -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  collapse_padding=True)
    for col in ("suite", "metric", "value", "baseline", "delta", "gate", "verdict"):
        table.add_column(col, justify="left" if col in ("suite", "metric", "gate") else "right",
                         no_wrap=True, min_width=len(col) + 2)  # the header and a gap
    gates = {g["metric"]: g for g in summary["gates"]}
    base = summary.get("baseline") or {}
    for suite, metrics in summary["suites"].items():
        for metric, value in metrics.items():
            g = gates.get(f"{suite}.{metric}")
            b = base.get(suite, {}).get(metric)
            delta = value - b if isinstance(value, (int, float)) and \
                isinstance(b, (int, float)) else None
            verdict = "-" if g is None else ("[green]PASS[/]" if g["passed"] else "[red]FAIL[/]")
            table.add_row(suite, metric, _num(value), _num(b),
                          "-" if delta is None else f"{delta:+.3g}",
                          g["condition"] if g else "", verdict)
    return table


def print_summary(summary: dict, details: dict[str, dict], console: Console,
                  title: str = "evaluation") -> None:
    """The gate table, up to three failures per suite with their reasons, and the verdict."""
    console.print(gate_table(summary, title))
    for name, result in details.items():
        if "label_tokens" in result:
            console.print(f"{name}: label tokens " + ", ".join(
                f"{k}={v}" for k, v in result["label_tokens"].items()))
        for f in result.get("failures", [])[:3]:
            console.print(f"{name}: [yellow]{f['where']}[/] " + "; ".join(f["reasons"]),
                          markup=True, highlight=False)
    failed = [g for g in summary["gates"] if not g["passed"]]
    for g in failed:
        console.print(f"[red]gate failed[/] {g['metric']}: " + "; ".join(g["reasons"]))
    n = len(summary["gates"])
    if not n:
        console.print("verdict: no gates declared (eval.gates)")
    else:
        console.print(f"verdict: {'[red]FAIL[/]' if failed else '[green]PASS[/]'} "
                      f"({n - len(failed)}/{n} gates pass)")
