"""Kept conversations wait on disk, not in memory: the spool file holds their messages, memory
holds a small entry per conversation (offset, source, stratum, group, tokens) for mixing and
splitting. Outputs are written by seeking back into the spool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    where: str
    source: str
    stratum: str
    group: str
    tokens: int


def encode(messages: list[dict]) -> bytes:
    """The JSON line of a conversation: spooled, and what exact deduplication hashes."""
    return json.dumps(messages, ensure_ascii=False).encode("utf-8")


class Spool:
    def __init__(self, path: Path):
        self.path = path
        self._w = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._r = None

    def add(self, blob: bytes, where: str, source: str, stratum: str, group: str,
            tokens: int) -> Entry:
        """Spool one conversation (its JSON line, see `encode`)."""
        offset = self._w.tell()
        self._w.write(blob + b"\n")
        return Entry(offset, where, source, stratum, group, tokens)

    def read(self, entry: Entry) -> list[dict]:
        if self._r is None:
            self._w.flush()
            self._r = open(self.path, "rb")  # noqa: SIM115
        self._r.seek(entry.offset)
        return json.loads(self._r.readline())

    def close(self) -> None:
        for f in (self._w, self._r):
            if f is not None:
                f.close()
        self.path.unlink(missing_ok=True)
