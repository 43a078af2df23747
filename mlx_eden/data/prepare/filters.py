"""The per-conversation filters, in the order the funnel shows them. Each takes a conversation
and returns why it is dropped (a reason naming the filter) or None; the pipeline counts them
per source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .where import MissingField, matches, parse_condition

# Funnel order (metadata.json and the terminal table use these names).
STEPS = ("malformed", "where", "pii", "empty turn", "no assistant turn", "hangul share",
         "latin share", "answer tokens", "exact duplicate", "near duplicate")


@dataclass
class Conversation:
    """A conversation on its way through the funnel, with what splits and mixing need."""

    source: str
    where: str
    messages: list[dict]
    stratum: str = ""
    group: str = ""
    tokens: int = 0  # content tokens of all turns (tokenizer given), else characters


# Counted on code points with numpy and a lookup table: a per-character Python loop was 60% of
# the pipeline's time (2,000 records/s, cProfile on benchmarks/data_prepare.py), three regex
# passes still 25%. Letters are the scripts a chat corpus holds: Hangul, Latin (with accents),
# Greek, Cyrillic, kana and CJK ideographs (code points above the BMP count as other).
_OTHER, _LATIN, _HANGUL, _LETTER = 0, 1, 2, 3
_KIND = np.zeros(0x10000, dtype=np.uint8)
for _lo, _hi in ((0xC0, 0x24F), (0x370, 0x52F), (0x3040, 0x30FF), (0x4E00, 0x9FFF)):
    _KIND[_lo:_hi + 1] = _LETTER
_KIND[[0xD7, 0xF7]] = _OTHER  # the multiplication and division signs
for _lo, _hi in ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F)):
    _KIND[_lo:_hi + 1] = _HANGUL
_KIND[0x41:0x5B] = _KIND[0x61:0x7B] = _LATIN


def letter_shares(text: str) -> tuple[float, float]:
    """(Hangul share, Latin share) among the letters of `text`; (0, 0) without letters."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    n = np.bincount(_KIND[np.minimum(cp, 0xFFFF)], minlength=4)
    letters = int(n[_LATIN] + n[_HANGUL] + n[_LETTER])
    return (int(n[_HANGUL]) / letters, int(n[_LATIN]) / letters) if letters else (0.0, 0.0)


def answers(conv: Conversation) -> list[str]:
    return [m["content"] for m in conv.messages if m["role"] == "assistant"]


def check_where(raw: dict, conditions) -> str | None:
    """'where' when a condition fails; raises MissingField/TypeError for a malformed row."""
    for cond in conditions:
        if not matches(raw, cond):
            return f"where: {cond[0]} {cond[1]} {json.dumps(cond[2], ensure_ascii=False)} failed"
    return None


def parse_where(texts: list[str]):
    return [parse_condition(t) for t in texts]


def check_shape(conv: Conversation, f) -> tuple[str, str] | None:
    """Empty or whitespace-only turns, and conversations with nothing to train."""
    if f.drop_empty:
        for i, m in enumerate(conv.messages):
            if not m["content"].strip():
                return "empty turn", f"messages.{i} ({m['role']}) is empty"
    if not answers(conv):
        return "no assistant turn", "no assistant turn: nothing to train"
    return None


def check_language(conv: Conversation, f) -> tuple[str, str] | None:
    if f.min_hangul is None and f.max_latin is None:
        return None
    hangul, latin = letter_shares("".join(answers(conv)))
    if f.min_hangul is not None and hangul < f.min_hangul:
        return "hangul share", f"Hangul share of answer letters {hangul:.3f} < {f.min_hangul}"
    if f.max_latin is not None and latin > f.max_latin:
        return "latin share", f"Latin share of answer letters {latin:.3f} > {f.max_latin}"
    return None


class TokenCounter:
    """Token counts with the recipe's tokenizer (a fast HF tokenizer, one batched call per
    conversation); character counts when the recipe names no tokenizer."""

    def __init__(self, tok=None):
        # The Rust tokenizer (not the transformers wrapper, whose __call__ adds ~1 ms per
        # conversation); encode_batch_fast skips the offsets: 314 vs 1,324 us per 550-character
        # Korean conversation with the tiny model's tokenizer (benchmarks/data_prepare.py).
        self.tok = getattr(tok, "backend_tokenizer", None) or tok
        self._encode = getattr(self.tok, "encode_batch_fast", None) or \
            getattr(self.tok, "encode_batch", None)

    def counts(self, texts: list[str]) -> list[int]:
        if self.tok is None:
            return [len(t) for t in texts]
        if self._encode is not None:
            return [len(e) for e in self._encode(texts, add_special_tokens=False)]
        return [len(x) for x in self.tok(texts, add_special_tokens=False)["input_ids"]]


def check_tokens(conv: Conversation, f, counter: TokenCounter) -> tuple[str, str] | None:
    """Every assistant turn within [min, max] answer tokens; sets conv.tokens either way."""
    counts = counter.counts([m["content"] for m in conv.messages])
    conv.tokens = sum(counts)
    lo, hi = f.min_answer_tokens, f.max_answer_tokens
    if lo is None and hi is None:
        return None
    for m, n in zip(conv.messages, counts, strict=True):
        if m["role"] != "assistant":
            continue
        if lo is not None and n < lo:
            return "answer tokens", f"an answer has {n} tokens < {lo}"
        if hi is not None and n > hi:
            return "answer tokens", f"an answer has {n} tokens > {hi}"
    return None


__all__ = ["STEPS", "Conversation", "MissingField", "TokenCounter", "answers", "check_language",
           "check_shape", "check_tokens", "check_where", "letter_shares", "parse_where"]
