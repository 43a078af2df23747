"""The terminal side of `data prepare`: a progress bar while sources stream in, and the funnel
(what each filter dropped per source, then mixing and splits) as Rich tables."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@contextmanager
def progress_bar(console: Console):
    """Yields `update(source, records_read)`; shown on a terminal only (a pulsing bar: the
    record count of a query or a file is not known before reading it)."""
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed:,} records"), TimeElapsedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    tasks: dict[str, int] = {}

    def update(source: str, n: int) -> None:
        if n % 500 and n > 1:  # redrawing per record would cost more than reading it
            return
        if source not in tasks:
            tasks[source] = bar.add_task(source, total=None)
        bar.update(tasks[source], completed=n)

    with bar:
        yield update


def funnel_table(meta: dict) -> Table:
    """Rows: filters in order; columns: sources (records left after each step, -dropped)."""
    sources = meta["sources"]
    t = Table(title=f"data prepare: {meta['name']}", title_justify="left")
    t.add_column("step")
    for s in sources:
        t.add_column(s["name"], justify="right")
    t.add_row("read", *[f"{s['read']:,}" for s in sources])
    steps = [row["step"] for row in sources[0]["filters"]] if sources else []
    for i, step in enumerate(steps):
        cells = [s["filters"][i]["dropped"] for s in sources]
        if any(cells):
            t.add_row(step, *[f"-{n:,}" if n else "" for n in cells])
    t.add_row("kept", *[f"{s['kept']:,}" for s in sources], style="bold")
    # After mixing (sampled to the shares, maybe repeated) and cross-split decontamination.
    final = [sum(sp["by_source"].get(s["name"], 0) for sp in meta["splits"].values())
             for s in sources]
    t.add_row("in the splits", *[f"{n:,}" for n in final], style="bold")
    pii = [s["pii_redacted"] for s in sources]
    if any(pii):
        t.add_row("pii redacted", *[", ".join(f"{k} {n}" for k, n in p.items()) for p in pii])
    return t


def splits_table(meta: dict) -> Table:
    unit = meta["length_unit"]
    t = Table(title="mix and splits", title_justify="left")
    for c in ("split", "records", "by source", f"{unit} p50/p90/max", "decontaminated"):
        t.add_column(c, justify="left" if c in ("split", "by source") else "right")
    for name, s in meta["splits"].items():
        ln = s["length"]
        t.add_row(name, f"{s['records']:,}", ", ".join(f"{k} {v}" for k, v in
                                                      s["by_source"].items()),
                  f"{ln['p50']}/{ln['p90']}/{ln['max']}" if ln else "", str(s["decontaminated"]))
    return t


def print_summary(console: Console, meta: dict, warnings: list[str], output) -> None:
    console.print(funnel_table(meta))
    console.print(splits_table(meta))
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if output is None:
        console.print("dry run: nothing written")
    else:
        console.print(f"wrote {output} (train/valid/test.jsonl, rejected.jsonl, metadata.json)")
