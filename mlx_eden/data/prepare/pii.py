"""Personal information: emails, phone numbers (Korean mobile and landline, international),
Korean resident registration numbers, card numbers (Luhn-checked), IPv4 addresses, URLs.

Hand-written regular expressions: Presidio and similar libraries need spaCy models (a download
at run time, which this project never does) and do not know Korean numbering formats. Every
pattern is anchored so that dates (2024-03-15, 2024.03.15), times, version numbers (3.11.4) and
amounts (1,000,000원) are left alone; tests/test_prepare_pii.py holds those cases.
"""

from __future__ import annotations

import re
from collections import Counter

# ASCII classes, not \w: Korean text sits right against numbers ("010-1234-5678입니다").
_NOT_NUM = r"(?<![0-9A-Za-z.+-])"  # no digit, Latin letter, dot, plus or dash right before
_END = r"(?![0-9A-Za-z-]|\.\d)"    # no digit, Latin letter, dash, or '.digit' right after

PATTERNS: dict[str, re.Pattern] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "url": re.compile(r"\bhttps?://[^\s<>\"']+|\bwww\.[A-Za-z0-9-]+\.[^\s<>\"']+"),
    # YYMMDD-GNNNNNN; month and day checked below.
    "rrn": re.compile(_NOT_NUM + r"(\d{2})(\d{2})(\d{2})\s?-\s?([1-8])\d{6}" + _END),
    # 13-19 digits, optionally grouped by spaces or dashes; Luhn-checked below.
    "card": re.compile(_NOT_NUM + r"\d(?:[ -]?\d){12,18}" + _END),
    "phone": re.compile(
        r"(?:\+\d{1,3}[ -]?(?:\(0\))?\d{1,4}(?:[ -]?\d{2,4}){2,3}"  # +82 10-1234-5678
        r"|" + _NOT_NUM + r"(?:01[016789]|02|0[3-6][1-5]|070|050\d?)[ -.]?\d{3,4}[ -.]?\d{4})"
        + _END),
    "ip": re.compile(r"(?<![0-9A-Za-z.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                     r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![0-9A-Za-z]|\.\d)"),
}
# URLs go first (an email-like user@host inside a URL is the URL), then the numbers from the most
# specific format to the least (an RRN is also 13 digits, like a card).
ORDER = ("url", "email", "rrn", "card", "phone", "ip")
TOKENS = {k: f"<{k.upper()}>" for k in PATTERNS}
# Cheap substring tests before each pattern: the patterns cost ~15 us per turn each, scanning
# every position of text that mostly holds no '@', no 'http' and few digits (cProfile,
# benchmarks/data_prepare.py: PII went from 30% of the pipeline's time to under 5%).
# Every number kind (phone, RRN, card, IP) is a run of at least 7 digits and separators.
_NUMBERISH = re.compile(r"\d[\d .()+-]{5,}\d")
_GATES = {"email": lambda t: "@" in t, "url": lambda t: "http" in t or "www." in t}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid(kind: str, m: re.Match) -> bool:
    if kind == "rrn":
        month, day = int(m.group(2)), int(m.group(3))
        return 1 <= month <= 12 and 1 <= day <= 31
    if kind == "card":
        return luhn_ok(re.sub(r"\D", "", m.group(0)))
    return True


class PiiScrubber:
    """Finds (and replaces) the configured kinds; counts hits per kind."""

    def __init__(self, kinds):
        self.kinds = [k for k in ORDER if k in kinds]

    def scrub(self, text: str, found: Counter | None = None) -> tuple[str, Counter]:
        """`text` with every hit replaced by its <KIND> token, and the hits per kind (added to
        `found` when given)."""
        found = Counter() if found is None else found
        numbers = None
        for kind in self.kinds:
            gate = _GATES.get(kind)
            if gate is None:
                if numbers is None:
                    numbers = _NUMBERISH.search(text) is not None
                if not numbers:
                    continue
            elif not gate(text):
                continue
            def repl(m, kind=kind):
                if not _valid(kind, m):
                    return m.group(0)
                found[kind] += 1
                return TOKENS[kind]
            text = PATTERNS[kind].sub(repl, text)
        return text, found

    def apply(self, messages: list[dict]) -> tuple[list[dict], Counter]:
        """Scrub every turn of a conversation; returns the new turns and the hits."""
        hits: Counter = Counter()
        out = [{"role": m["role"], "content": self.scrub(m["content"], hits)[0]} for m in messages]
        return out, hits
