"""Splits: fractions per stratum, groups kept whole, oversampled train, and near duplicates
removed across splits so no test conversation leaks into training.

Allocation is per stratum (largest remainder over its groups), so a 90/10 class ratio in the
data is the ratio of every split; a group (all variants of one conversation) goes to one split.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .mixing import largest_remainder
from .spool import Entry

SPLITS = ("train", "valid", "test")


def assign(entries: list[Entry], fractions: list[float], seed: int) -> dict[str, list[Entry]]:
    """Split by stratum and group (an entry's stratum and group are '' when not used)."""
    fr = list(fractions) + [0.0] * (3 - len(fractions))
    groups: dict[str, dict[str, list[Entry]]] = defaultdict(dict)
    for i, e in enumerate(entries):
        key = e.group if e.group else f"#{i}"
        groups[e.stratum].setdefault(key, []).append(e)
    rng = np.random.default_rng([seed, 23])
    out: dict[str, list[Entry]] = {s: [] for s in SPLITS}
    for stratum in sorted(groups):
        units = [groups[stratum][k] for k in sorted(groups[stratum])]
        order = rng.permutation(len(units))
        counts = largest_remainder(len(units), fr)
        start = 0
        for name, n in zip(SPLITS, counts, strict=True):
            for j in order[start:start + n]:
                out[name] += units[j]
            start += n
    return out


def oversample(train: list[Entry], seed: int) -> list[Entry]:
    """Repeat (seeded) records of the smaller strata until each is as large as the largest."""
    by: dict[str, list[Entry]] = defaultdict(list)
    for e in train:
        by[e.stratum].append(e)
    top = max((len(v) for v in by.values()), default=0)
    rng = np.random.default_rng([seed, 29])
    out = list(train)
    for s in sorted(by):
        g = by[s]
        out += [g[i] for i in rng.integers(0, len(g), top - len(g))]
    return out


def decontaminate(splits: dict[str, list[Entry]], near, read) -> dict[str, int]:
    """Drop valid entries near-duplicating a test entry, then train entries near-duplicating
    a test or valid one: `near` is a fresh NearDedup (its index grows with test, then valid),
    `read(entry)` the messages. Returns the drops per split."""
    dropped = {s: 0 for s in SPLITS}
    key = 0
    for held, checked in (("test", ("valid",)), ("valid", ("train",))):
        for e in splits[held]:
            near.insert(key, near.signature(read(e)))
            key += 1
        for name in checked:
            keep = []
            for e in splits[name]:
                if near.match(near.signature(read(e))) is None:
                    keep.append(e)
                else:
                    dropped[name] += 1
            splits[name] = keep
    return dropped


def shuffle(entries: list[Entry], seed: int, salt: int) -> list[Entry]:
    order = np.random.default_rng([seed, salt]).permutation(len(entries))
    return [entries[i] for i in order]
