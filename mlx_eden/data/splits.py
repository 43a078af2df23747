"""Load the train/valid/test splits a recipe names, tokenized, with their statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from .formats import Record, read_jsonl
from .render import RenderStats, Sample, render_records


@dataclass
class Splits:
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]
    stats: dict[str, RenderStats] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _read(files: list[str], fmt: str) -> list[Record]:
    out: list[Record] = []
    for f in files:
        out += read_jsonl(f, fmt)
    return out


def split_records(records: list[Record], fractions: list[float], seed: int):
    """Seeded shuffle, then [train, valid, test] by fraction (each non-empty part gets >= 1)."""
    order = np.random.default_rng(seed).permutation(len(records))
    n = len(records)
    n_valid = max(1, round(fractions[1] * n)) if fractions[1] > 0 else 0
    n_test = max(1, round(fractions[2] * n)) if fractions[2] > 0 else 0
    if n - n_valid - n_test < 1:
        raise UserError(f"{n} records cannot be split by {fractions}", key="data.split",
                        hint="give more data or a larger train fraction")
    pick = [records[i] for i in order]
    return pick[: n - n_valid - n_test], pick[n - n_valid - n_test : n - n_test], pick[n - n_test :]


def load_splits(spec, tok, seed: int) -> Splits:
    """Read, split (if data.split is set), and tokenize every split of a DataSpec."""
    if not spec.train:
        raise UserError("no training data", key="data.train",
                        hint="set data.train to a JSONL file, e.g. --set data.train=train.jsonl")
    train = _read(spec.train, spec.format)
    valid = _read(spec.valid, spec.format) if spec.valid else []
    test = _read(spec.test, spec.format) if spec.test else []
    if spec.split and not spec.valid:
        train, valid, split_test = split_records(train, spec.split, seed)
        test = test or split_test
    out = Splits([], [], [], files=list(spec.train) + list(spec.valid) + list(spec.test))
    for name, records in (("train", train), ("valid", valid), ("test", test)):
        samples, stats = render_records(records, tok, spec) if records else ([], RenderStats())
        setattr(out, name, samples)
        out.stats[name] = stats
    if not out.train:
        raise UserError("every training sample was dropped (too long, or nothing to train)",
                        key="data.max_seq_length", hint="raise data.max_seq_length or use "
                        "data.truncation=truncate")
    return out
