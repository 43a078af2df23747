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


OPEN, CLOSE = "⟦", "⟧"  # marks trained spans where colour is lost (a pipe, a file, CI logs)


def highlighted(tok, sample, markers: bool = False) -> Text:
    """The sample's text with trained tokens in green and the rest dimmed; with `markers`,
    each trained span is also wrapped in ⟦...⟧ so the distinction survives plain text. Runs of
    tokens with the same mask are decoded together: a byte-level token may hold part of a
    character (Korean, emoji), which decoded alone prints as U+FFFD."""
    text = Text()
    edges = [0, *(np.flatnonzero(np.diff(sample.mask.astype(np.int8))) + 1), len(sample.ids)]
    for a, b in zip(edges, edges[1:], strict=False):
        if b > a:
            trained = bool(sample.mask[a])
            piece = tok.decode(sample.ids[a:b].tolist())
            if markers and trained:
                piece = f"{OPEN}{piece}{CLOSE}"
            text.append(piece, style="bold green" if trained else "dim")
    return text


def nfc_note(stats) -> str | None:
    """A warning line when some records are not NFC-normalized (e.g. Korean copied on macOS)."""
    if not stats.not_nfc:
        return None
    return (f"{len(stats.not_nfc)} record(s) not in NFC form (first: {stats.not_nfc[0]}): "
            "transformers normalizes them, llama.cpp/Ollama does not, so a GGUF sees other "
            "(more) tokens; normalize the text to NFC (unicodedata.normalize('NFC', s))")


def thinking_note(stats, args: dict) -> str | None:
    """A warning when reasoning is trained but eval and Ollama will ask in non-thinking mode."""
    if not stats.reasoning or args.get("enable_thinking", True) is not False:
        return None
    return (f"{stats.reasoning} record(s) train reasoning (<think>) but enable_thinking is false, "
            "so eval and Ollama ask without thinking; set data.chat_template_args: "
            "{enable_thinking: true}, or data.reasoning: strip")


def print_report(console: Console, file, fmt, stats, max_len, tok, example, args=None) -> None:
    console.print(summary_table(file, fmt, stats, max_len))
    for note in (nfc_note(stats), thinking_note(stats, args or {})):
        if note:
            console.print(f"[yellow]warning:[/] {note}", highlight=False)
    if example is not None:
        plain = not console.is_terminal or console.no_color
        what = f"{OPEN}...{CLOSE}" if plain else "[bold green]green[/]"
        console.print(f"\nexample ({example.where}); {what} = trained tokens:")
        console.print(highlighted(tok, example, markers=plain))
