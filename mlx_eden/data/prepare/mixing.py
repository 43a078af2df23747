"""Mixing: target shares per source (70/15/10/5) and a replay share, seeded.

The mixed size is `mix.total`, or else the largest size every source can fill at its share
without repeating a record. A source too small for its share is never silent: it is repeated
(seeded) or falls short, and a warning says which and by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class MixResult:
    picks: dict[str, list[int]]            # group -> positions (into its kept list), may repeat
    targets: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def largest_remainder(total: int, shares: list[float]) -> list[int]:
    """Integer counts proportional to `shares` that sum exactly to `total`."""
    raw = [total * s for s in shares]
    out = [math.floor(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def mix(available: dict[str, int], shares: dict[str, float] | None, total: int | None,
        on_short: str, seed: int) -> MixResult:
    """Pick records per group. `available` is the kept count per group (sources, 'replay');
    `shares` None keeps everything once."""
    names = list(available)
    if shares is None:
        return MixResult({n: list(range(available[n])) for n in names}, dict(available))
    # An emptied source cannot bound the size (it would make it 0): it is a shortfall below.
    live = [n for n in names if shares.get(n, 0) > 0 and available[n] > 0]
    if total is None:
        total = min((math.floor(available[n] / shares[n]) for n in live), default=0)
    counts = largest_remainder(total, [shares.get(n, 0.0) for n in names])
    rng = np.random.default_rng([seed, 11])
    res = MixResult({}, dict(zip(names, counts, strict=True)))
    for n, want in zip(names, counts, strict=True):
        have = available[n]
        if want <= have:
            res.picks[n] = sorted(rng.choice(have, size=want, replace=False).tolist())
            continue
        if have == 0:
            res.picks[n] = []
            res.warnings.append(f"{n}: no records left after filtering for a share of "
                                f"{shares[n]:.0%} ({want} wanted): shortfall of {want}")
            continue
        if on_short == "repeat":
            full, rest = divmod(want, have)
            extra = sorted(rng.choice(have, size=rest, replace=False).tolist())
            res.picks[n] = list(range(have)) * full + extra
            res.warnings.append(f"{n}: {have} records for a share of {shares[n]:.0%} ({want} "
                                f"wanted): repeated, each record {want / have:.2f} times on "
                                "average")
        else:
            res.picks[n] = list(range(have))
            res.warnings.append(f"{n}: {have} records for a share of {shares[n]:.0%} ({want} "
                                f"wanted): shortfall of {want - have}, realized share "
                                "lower")
    return res
