"""Exact and near-duplicate detection.

Near duplicates: datasketch's MinHash + LSH over character shingles of the user and assistant
text (characters, not words: Korean attaches particles to words, so word shingles of two
near-identical Korean sentences share little). LSH candidates are confirmed by the MinHash
Jaccard estimate against the threshold, so the banding's false positives are not dropped.
This is the one part of `data prepare` whose memory grows with the input: a signature
(num_perm x 8 bytes) and its LSH band keys per kept conversation.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

_SPACE = re.compile(r"\s+")


def conversation_key(messages: list[dict]) -> bytes:
    """16-byte digest of the exact conversation (roles and text)."""
    blob = json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.blake2b(blob, digest_size=16).digest()


def dedup_text(messages: list[dict]) -> str:
    """What near-duplicate detection compares: user and assistant text, case and whitespace
    folded. System prompts are left out: they repeat across a whole source by design."""
    text = " ".join(m["content"] for m in messages if m["role"] != "system")
    return _SPACE.sub(" ", text).strip().lower()


def shingles(text: str, k: int) -> list[bytes]:
    if len(text) <= k:
        return [text.encode("utf-8")]
    return list({text[i:i + k].encode("utf-8") for i in range(len(text) - k + 1)})


class ExactDedup:
    """Remembers 16-byte digests only (~100 bytes per conversation with the set's overhead)."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def seen_before(self, messages: list[dict]) -> bool:
        key = conversation_key(messages)
        if key in self.seen:
            return True
        self.seen.add(key)
        return False


class NearDedup:
    """MinHash/LSH index: `add_if_new` keeps the first of each group of near duplicates."""

    def __init__(self, threshold: float, num_perm: int = 64, shingle: int = 5):
        from datasketch import MinHash, MinHashLSH

        self._MinHash = MinHash
        self.threshold, self.num_perm, self.k = threshold, num_perm, shingle
        # One set of permutations for every signature (building them per MinHash costs more
        # than hashing a short conversation).
        self._perms = MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.sigs: dict[int, np.ndarray] = {}

    def signature(self, messages: list[dict]):
        m = self._MinHash(num_perm=self.num_perm, seed=1, permutations=self._perms,
                          scheme="affine32")
        m.update_batch(shingles(dedup_text(messages), self.k))
        return m

    def match(self, sig) -> int | None:
        """The id of an indexed conversation at least `threshold` similar, or None."""
        for key in sorted(self.lsh.query(sig)):
            if float(np.mean(self.sigs[key] == sig.hashvalues)) >= self.threshold:
                return key
        return None

    def insert(self, key: int, sig) -> None:
        self.lsh.insert(key, sig, check_duplication=False)
        self.sigs[key] = sig.hashvalues

    def add_if_new(self, key: int, messages: list[dict]) -> bool:
        """Index the conversation unless it near-duplicates one already indexed."""
        sig = self.signature(messages)
        if self.match(sig) is not None:
            return False
        self.insert(key, sig)
        return True
