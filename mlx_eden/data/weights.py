"""Weighted data.train entries ({path, weight}): what one epoch draws from each source.

An epoch holds N samples, N = the train records of all sources together (after data.split).
Source i gets round(N x w_i / sum w) of them (largest remainder, so the counts sum to N). It is
drawn in a seeded order (train.seed) without replacement; a source asked for more than it holds
is used up and then started over in a fresh seeded order, so no record repeats before every
record of its source has been drawn. The draw happens once per run, before batching: batch
composition stays fixed and each epoch only reshuffles the batch order (data/batching.py), which
is what keeps --resume exact from a micro-step counter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .formats import Record
from .prepare.mixing import largest_remainder  # the same rounding `data prepare` mixes with


def train_entries(spec) -> list[tuple[str, float | None]]:
    """(path, weight) per data.train entry; weight None for a plain path."""
    return [(e, None) if isinstance(e, str) else (e.path, e.weight) for e in spec.train]


def train_paths(spec) -> list[str]:
    return [p for p, _ in train_entries(spec)]


def train_files(spec) -> list[str]:
    """The JSONL files data.train reads (a folder entry means its train.jsonl)."""
    return [resolve_path(p) for p in train_paths(spec)]


def is_weighted(spec) -> bool:
    return any(w is not None for _, w in train_entries(spec))


def resolve_path(path: str) -> str:
    """A weighted entry naming a `data prepare` folder means its train.jsonl."""
    return str(Path(path) / "train.jsonl") if Path(path).is_dir() else path


def draw(groups: list[list[Record]], weights: list[float], seed: int) -> list[Record]:
    """One epoch's records: each group's count by weight, drawn as the module docstring says."""
    total = sum(len(g) for g in groups)
    live = [w if g else 0.0 for g, w in zip(groups, weights, strict=True)]  # all in valid/test
    counts = largest_remainder(total, [w / sum(live) for w in live])
    out: list[Record] = []
    for i, (group, want) in enumerate(zip(groups, counts, strict=True)):
        if not group:
            continue
        rng = np.random.default_rng([seed, 13, i])
        order: list[int] = []
        while len(order) < want:  # exhaust, then start over in a new order
            order += rng.permutation(len(group)).tolist()
        out += [group[j] for j in order[:want]]
    return out


def mix_train(train: list[Record], spec, seed: int) -> tuple[list[Record], dict[str, dict]]:
    """Group the train split by source file and draw one weighted epoch from it; also return,
    per data.train entry, its weight, its train records and how many the epoch drew."""
    entries = [(path, resolve_path(path), 1.0 if w is None else w)
               for path, w in train_entries(spec)]
    index = {f: i for i, (_, f, _) in enumerate(entries)}
    groups: list[list[Record]] = [[] for _ in entries]
    for r in train:
        groups[index[r.file]].append(r)
    mixed = draw(groups, [w for *_, w in entries], seed)
    drawn = {f: 0 for _, f, _ in entries}
    for r in mixed:
        drawn[r.file] += 1
    report = {path: {"weight": w, "records": len(g), "drawn": drawn[f]}
              for (path, f, w), g in zip(entries, groups, strict=True)}
    return mixed, report
