"""Exact and near-duplicate detection.

Near duplicates: MinHash signatures (computed here with numpy, see `minhash_values`) indexed
by datasketch's LSH, over character shingles of the user and assistant
text (characters, not words: Korean attaches particles to words, so word shingles of two
near-identical Korean sentences share little). LSH candidates are confirmed by the MinHash
Jaccard estimate against the threshold, so the banding's false positives are not dropped.
This is the one part of `data prepare` whose memory grows with the input: a signature
(num_perm x 4 bytes) and its LSH band keys per kept conversation.
"""

from __future__ import annotations

import hashlib

import numpy as np


def conversation_key(blob: bytes) -> bytes:
    """16-byte digest of the exact conversation (its JSON line: roles and text)."""
    return hashlib.blake2b(blob, digest_size=16).digest()


def dedup_text(messages: list[dict]) -> str:
    """What near-duplicate detection compares: user and assistant text, case and whitespace
    folded. System prompts are left out: they repeat across a whole source by design."""
    return " ".join(" ".join(m["content"] for m in messages
                             if m["role"] != "system").split()).lower()


_POW = np.uint64(1_000_003) ** np.arange(16, dtype=np.uint64)[::-1]  # polynomial weights


def shingle_hashes(text: str, k: int) -> np.ndarray:
    """Distinct 32-bit hashes of the k-character shingles of `text`, computed with numpy.

    datasketch's default hashes each shingle with SHA-1 in a Python loop: 70% of the time with
    near-dedup on (1,000 records/s, cProfile on benchmarks/data_prepare.py). A polynomial hash
    over the code points, mixed like murmur's finaliser, is vectorised instead.
    """
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    k = min(k, len(cp)) or 1
    n = max(len(cp) - k + 1, 1)
    h = np.zeros(n, dtype=np.uint64)
    for j in range(min(k, len(cp))):  # k shifted multiply-adds: h_i = sum_j cp[i+j] P^(k-1-j)
        h += cp[j:j + n] * _POW[len(_POW) - k + j]
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return np.unique(h & np.uint64(0xFFFFFFFF))


def minhash_values(hashes: list[int] | np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinHash signature: per permutation i, min over shingles of ((a_i * h + b_i) mod 2^64)
    >> 32 (Dietzfelbinger's multiply-add-shift, universal for 32-bit h with random 64-bit a, b;
    numpy's uint64 arithmetic wraps mod 2^64). One (num_perm x
    shingles) numpy op instead of datasketch's per-value Python loop in update_batch (half of
    the near-dedup time after the shingle hashing was vectorised)."""
    h = np.asarray(hashes, dtype=np.uint64)
    sig = ((a[:, None] * h[None, :] + b[:, None]) >> np.uint64(32)).min(axis=1)
    return sig.astype(np.uint32)  # 32-bit values: half the memory of the index's signatures


class ExactDedup:
    """Remembers 16-byte digests only (~100 bytes per conversation with the set's overhead)."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def seen_before(self, blob: bytes) -> bool:
        key = conversation_key(blob)
        if key in self.seen:
            return True
        self.seen.add(key)
        return False


class Signature:
    """A MinHash signature in the shape datasketch's LSH reads (len() and .hashvalues);
    building a datasketch MinHash from values cost ~200 us each (numpy errstate set-up)."""

    __slots__ = ("hashvalues",)

    def __init__(self, hashvalues: np.ndarray):
        self.hashvalues = hashvalues

    def __len__(self) -> int:
        return len(self.hashvalues)


class NearDedup:
    """MinHash/LSH index: `add_if_new` keeps the first of each group of near duplicates."""

    def __init__(self, threshold: float, num_perm: int = 64, shingle: int = 5):
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.k = threshold, num_perm, shingle
        rng = np.random.default_rng(1)  # fixed: signatures must not depend on the recipe seed
        top = np.iinfo(np.uint64).max
        self._a = rng.integers(0, top, num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
        self._b = rng.integers(0, top, num_perm, dtype=np.uint64, endpoint=True)
        assert 1 <= shingle <= len(_POW)
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.sigs: dict[int, np.ndarray] = {}

    def signature(self, messages: list[dict]):
        values = minhash_values(shingle_hashes(dedup_text(messages), self.k), self._a, self._b)
        return Signature(values)  # datasketch's LSH bands and indexes it

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
