"""One source through the filters: read items, convert, filter, count, spool what is kept and
write every drop to rejected.jsonl. State shared across sources (duplicate indexes, spool,
rejected file) lives in `Shared`; the counts of one source in `SourceCounts`.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from ...errors import UserError
from .convert import Malformed, to_messages
from .dedup import ExactDedup, NearDedup
from .filters import (
    STEPS,
    Conversation,
    MissingField,
    TokenCounter,
    check_language,
    check_shape,
    check_tokens,
    check_where,
    parse_where,
)
from .pii import PiiScrubber
from .spool import Entry, Spool, encode
from .where import lookup


@dataclass
class SourceCounts:
    read: int = 0
    dropped: Counter = field(default_factory=Counter)
    redacted: Counter = field(default_factory=Counter)
    nfc_normalized: int = 0

    @property
    def kept(self) -> int:
        return self.read - sum(self.dropped.values())

    def steps(self) -> list[dict]:
        """[{step, in, dropped}] in funnel order."""
        left, out = self.read, []
        for s in STEPS:
            out.append({"step": s, "in": left, "dropped": self.dropped[s]})
            left -= self.dropped[s]
        return out


@dataclass
class Shared:
    spool: Spool
    rejected: object  # the open rejected.jsonl (binary)
    counter: TokenCounter
    strict: bool
    split: object  # SplitSpec: stratify_by and group_by are read per record
    exact: ExactDedup = field(default_factory=ExactDedup)
    # Replay is deduplicated within itself only: a replayed conversation that reappears in this
    # round's data is the user's choice of replay, and must not empty the replay share.
    replay_exact: ExactDedup = field(default_factory=ExactDedup)
    near: dict = field(default_factory=dict)  # (threshold, num_perm, shingle) -> NearDedup
    next_key: int = 0

    def reject(self, source: str, where: str, step: str, reason: str, messages=None) -> None:
        row = {"source": source, "where": where, "filter": step, "reason": reason}
        if messages is not None:  # only after PII handling: rejected.jsonl never leaks PII
            row["messages"] = messages
        self.rejected.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")

    def near_index(self, f) -> NearDedup:
        k = (f.near_dedup, f.num_perm, f.shingle)
        if k not in self.near:
            self.near[k] = NearDedup(*k)
        return self.near[k]


def split_keys(raw: dict, messages: list[dict], source: str, split, lenient: bool):
    """(stratum, group) of a record for split.stratify_by / split.group_by."""
    def value(path):
        if path == "source":
            return source
        if path == "label":
            return [m["content"] for m in messages if m["role"] == "assistant"][-1:][0].strip() \
                if any(m["role"] == "assistant" for m in messages) else ""
        try:
            return str(lookup(raw, path))
        except MissingField:
            if lenient:
                return ""
            raise
    stratum = value(split.stratify_by) if split.stratify_by else ""
    group = f"{source}:{value(split.group_by)}" if split.group_by else ""
    return stratum, group


def run_source(items, spec, shared: Shared, on_item=None, lenient: bool = False):
    """Drive every item of one source through the funnel; returns (entries kept, counts)."""
    counts, kept = SourceCounts(), []
    conds = parse_where(spec.where)
    scrub = PiiScrubber(spec.filters.pii.kinds) if spec.filters.pii.action != "off" else None
    for item in items:
        counts.read += 1
        if on_item is not None:
            on_item(counts.read)
        entry = _one(item, spec, shared, conds, scrub, counts, lenient)
        if entry is not None:
            kept.append(entry)
    return kept, counts


def _drop(shared, spec, counts, where, step, reason, messages=None):
    if step == "malformed" and shared.strict:
        raise UserError(reason, file=where, hint="fix the record, or run without --strict to "
                        "send it to rejected.jsonl")
    counts.dropped[step] += 1
    shared.reject(spec.name, where, step, reason, messages)


def _one(item, spec, shared: Shared, conds, scrub, counts: SourceCounts, lenient) -> Entry | None:
    f = spec.filters
    if item.error is not None:
        return _drop(shared, spec, counts, item.where, "malformed", item.error)
    try:
        msgs = to_messages(item.raw, item.rows, spec)
        stratum, group = split_keys(item.raw, msgs, spec.name, shared.split, lenient)
        failed = check_where(item.raw, conds)
    except Malformed as e:
        return _drop(shared, spec, counts, item.where, "malformed", str(e))
    except MissingField as e:
        return _drop(shared, spec, counts, item.where, "malformed",
                     f"field {e.args[0]!r} is missing")
    except TypeError as e:
        return _drop(shared, spec, counts, item.where, "malformed", f"cannot compare: {e}")
    if failed:
        return _drop(shared, spec, counts, item.where, "where", failed)
    conv = Conversation(spec.name, item.where, msgs, stratum, group)
    if f.nfc:
        conv.messages, changed = _nfc(conv.messages)
        counts.nfc_normalized += changed
    if scrub is not None:
        conv.messages, hits = scrub.apply(conv.messages)
        if hits and f.pii.action == "drop":
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(hits.items()))
            return _drop(shared, spec, counts, item.where, "pii", f"personal information: {kinds}")
        counts.redacted += hits
    return _filter(conv, spec, shared, counts)


def _nfc(messages: list[dict]) -> tuple[list[dict], bool]:
    """The messages with NFC text, and whether any turn changed."""
    out = [{**m, "content": unicodedata.normalize("NFC", m["content"])} for m in messages]
    return out, any(a["content"] != b["content"] for a, b in zip(messages, out, strict=True))


def _filter(conv: Conversation, spec, shared: Shared, counts: SourceCounts) -> Entry | None:
    f = spec.filters
    problem = check_shape(conv, f) or check_language(conv, f) or \
        check_tokens(conv, f, shared.counter)
    exact = shared.replay_exact if conv.source.startswith("replay:") else shared.exact
    blob = encode(conv.messages)
    if problem is None and f.exact_dedup and exact.seen_before(blob):
        problem = ("exact duplicate", "the same conversation was kept earlier")
    if problem is None and f.near_dedup is not None:
        shared.next_key += 1
        if not shared.near_index(f).add_if_new(shared.next_key, conv.messages):
            problem = ("near duplicate", f"Jaccard >= {f.near_dedup} with a conversation kept "
                       "earlier")
    if problem is not None:
        return _drop(shared, spec, counts, conv.where, problem[0], problem[1], conv.messages)
    return shared.spool.add(blob, conv.where, conv.source, conv.stratum, conv.group,
                            conv.tokens)
