"""The terminal chat of `eden-mlx chat`: multi-turn history rendered by the model's own template
(with the run's template options), answers streamed as they are generated, tokens/s after each.
The generation is a function handed in (`stream`), so this module knows no backend.

Commands: /reset (forget the conversation), /system TEXT (replace the system prompt; empty
TEXT removes it), /quit (or Ctrl-D)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import click

from ..data.prompting import conversation_ids, stop_ids, system_text, with_system

Stream = Callable[[list[int], int, set], Iterator[tuple[str, int]]]
HELP = "/reset forgets the conversation · /system TEXT sets the system prompt · /quit ends"


class ChatSession:
    def __init__(self, tok, stream: Stream, template_args: dict, system: str, style: str = "",
                 max_tokens: int = 512, read: Callable[[str], str] = input,
                 write: Callable[[str], None] = lambda s: click.echo(s, nl=False)):
        self.tok, self.stream, self.template_args = tok, stream, template_args
        self.system, self.style, self.max_tokens = system, style, max_tokens
        self.read, self.write = read, write
        self.stop = stop_ids(tok)
        self.history: list[dict] = []

    def messages(self) -> list[dict]:
        return with_system(self.history, system_text("", self.system, self.style))

    def command(self, line: str) -> bool:
        """Handle a /command; False when the chat should end."""
        name, _, rest = line.partition(" ")
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            self.history = []
            self.write(click.style("(conversation cleared)\n", dim=True))
        elif name == "/system":
            self.system = rest.strip()
            self.write(click.style(f"(system prompt: {self.system or 'none'})\n", dim=True))
        else:
            self.write(click.style(f"(unknown command {name}; {HELP})\n", fg="yellow"))
        return True

    def answer(self, text: str) -> None:
        """Stream the model's answer to the user's `text` and keep both in the history."""
        self.history.append({"role": "user", "content": text})
        ids = conversation_ids(self.tok, self.messages(), self.template_args)
        self.write(click.style("model> ", fg="green"))
        pieces, tokens, start = [], 0, time.perf_counter()
        for piece, so_far in self.stream(ids, self.max_tokens, self.stop):
            pieces.append(piece)
            tokens = so_far
            self.write(piece)
        seconds = time.perf_counter() - start
        rate = f"{tokens / seconds:.1f} tok/s" if seconds > 0 else "—"
        self.write("\n" + click.style(f"[{tokens} tokens · {rate}]", dim=True) + "\n")
        self.history.append({"role": "assistant", "content": "".join(pieces)})

    def run(self) -> None:
        """Read, answer, repeat, until /quit or end of input."""
        self.write(click.style(HELP + "\n", dim=True))
        while True:
            try:
                self.write(click.style("you> ", fg="cyan"))
                line = self.read("").strip()
            except EOFError:
                self.write("\n")
                return
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
                continue
            self.answer(line)
