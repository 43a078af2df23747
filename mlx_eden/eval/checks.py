"""Per-answer checks of generate suites. Each returns the reasons an answer fails (empty = pass).

Scripts are told apart by Unicode block: Hangul syllables and jamo for `hangul_ratio_min`, Basic
Latin and Latin-1/Extended letters for `latin_ratio_max`; both are shares of the answer's letters
(str.isalpha), so digits, punctuation and spaces count for neither. Repetition is counted on
generated token ids, not words, so it works for scripts written without spaces (Korean, code).
"""

from __future__ import annotations

import re
from collections import Counter

from .metrics import normalise

_HANGUL = ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F),
           (0xD7B0, 0xD7FF))
_LATIN = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF))


def _share(text: str, blocks) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    hits = sum(any(lo <= ord(c) <= hi for lo, hi in blocks) for c in letters)
    return hits / len(letters)


def hangul_ratio(text: str) -> float:
    """Share of the letters of `text` that are Hangul."""
    return _share(text, _HANGUL)


def latin_ratio(text: str) -> float:
    """Share of the letters of `text` that are Latin."""
    return _share(text, _LATIN)


def max_ngram_count(ids: list[int], n: int) -> int:
    """How often the most frequent token n-gram of `ids` occurs (0 when shorter than n)."""
    grams = Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))
    return max(grams.values(), default=0)


def failures(checks, answer: str, ids: list[int], reference: str) -> list[str]:
    """Every check of `checks` (a ChecksSpec) that `answer` fails, as a short reason."""
    why: list[str] = []
    if checks.exact and normalise(answer) != normalise(reference):
        why.append("not the reference" if reference else "exact: the record has no reference")
    why += [f"does not contain {s!r}" for s in checks.contains if s not in answer]
    if checks.regex is not None and not re.search(checks.regex, answer):
        why.append(f"does not match /{checks.regex}/")
    if checks.min_chars is not None and len(answer.strip()) < checks.min_chars:
        why.append(f"{len(answer.strip())} chars < min_chars {checks.min_chars}")
    if checks.max_tokens is not None and len(ids) > checks.max_tokens:
        why.append(f"{len(ids)} tokens > max_tokens {checks.max_tokens}")
    if checks.hangul_ratio_min is not None and hangul_ratio(answer) < checks.hangul_ratio_min:
        why.append(f"Hangul share {hangul_ratio(answer):.2f} < {checks.hangul_ratio_min}")
    if checks.latin_ratio_max is not None and latin_ratio(answer) > checks.latin_ratio_max:
        why.append(f"Latin share {latin_ratio(answer):.2f} > {checks.latin_ratio_max}")
    if checks.max_repeat_ngram is not None:
        top = max_ngram_count(ids, checks.ngram)
        if top > checks.max_repeat_ngram:
            why.append(f"a {checks.ngram}-gram repeats {top}x > {checks.max_repeat_ngram}")
    return why
