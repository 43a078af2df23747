"""`eden-mlx data check`: what the trainer will see, before it sees it."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text


def summary_table(file: str, fmt: str, stats, max_len: int) -> Table:
    lengths = np.asarray(stats.lengths or [0])
    table = Table(title=f"{file} ({fmt})", show_header=False)
    table.add_row("records", str(len(stats.lengths)))
    table.add_row("kept samples", str(stats.samples))
    table.add_row("trained tokens", str(stats.trained_tokens))
    p = np.percentile(lengths, [0, 50, 90, 99, 100]).astype(int)
    table.add_row("tokens min/p50/p90/p99/max", " / ".join(map(str, p)))
    table.add_row(f"longer than {max_len}", f"{int((lengths > max_len).sum())} "
                  f"({stats.truncated} truncated, {stats.dropped} dropped)")
    return table


def highlighted(tok, sample) -> Text:
    """The sample's text with trained tokens in green and the rest dimmed."""
    text = Text()
    for tid, trained in zip(sample.ids.tolist(), sample.mask.tolist(), strict=True):
        piece = tok.decode([tid])
        text.append(piece, style="bold green" if trained else "dim")
    return text


def print_report(console: Console, file, fmt, stats, max_len, tok, example) -> None:
    console.print(summary_table(file, fmt, stats, max_len))
    if example is not None:
        console.print(f"\nexample ({example.where}); [bold green]green[/] = trained tokens:")
        console.print(highlighted(tok, example))
