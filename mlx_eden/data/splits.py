"""Load the train/valid/test splits a recipe names, tokenized, with their statistics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .formats import PREFERENCE, Record, read_jsonl
from .render import RenderStats, Sample, render_records
from .weights import is_weighted, mix_train, train_files, train_paths


@dataclass
class Splits:
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]
    stats: dict[str, RenderStats] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    mix: dict[str, dict] = field(default_factory=dict)  # weighted data.train: counts per source


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


def prepared_folder(spec):
    """data.train naming a `data prepare` output folder means its train.jsonl, and its
    valid.jsonl / test.jsonl unless data.valid / data.test / data.split say otherwise."""
    paths = train_paths(spec)
    if len(paths) != 1 or not Path(paths[0]).is_dir():
        return spec
    d = Path(paths[0])
    if not (d / "train.jsonl").is_file():
        raise UserError("folder has no train.jsonl", file=str(d), key="data.train",
                        hint="point data.train at a JSONL file or a `data prepare` output folder")

    def part(name, given):
        return list(given) or ([str(d / name)] if (d / name).is_file() and not spec.split else [])

    train = str(d / "train.jsonl")
    return dataclasses.replace(spec, train=[train] if isinstance(spec.train[0], str) else
                               [dataclasses.replace(spec.train[0], path=train)],
                               valid=part("valid.jsonl", spec.valid),
                               test=part("test.jsonl", spec.test))


def read_splits(spec, seed: int, mix: dict | None = None) -> dict[str, list[Record]]:
    """The records of each split: read, split off train per data.split, balanced per
    data.balance, drawn by weight (data/weights.py; the counts per source go into `mix`).
    Evaluation uses this too, so it sees the very split training saw."""
    spec = prepared_folder(spec)
    if not spec.train:
        raise UserError("no training data", key="data.train",
                        hint="set data.train to a JSONL file, e.g. --set data.train=train.jsonl")
    train = _read(train_files(spec), spec.format)
    valid = _read(spec.valid, spec.format) if spec.valid else []
    test = _read(spec.test, spec.format) if spec.test else []
    if spec.split and not spec.valid:
        train, valid, split_test = split_records(train, spec.split, seed)
        test = test or split_test
    if spec.balance:
        train = balance_labels(train, seed)
    if is_weighted(spec):
        train, report = mix_train(train, spec, seed)
        if mix is not None:
            mix.update(report)
    return {"train": train, "valid": valid, "test": test}


def label_of(record: Record) -> str:
    """The final answer of a record: the label of a classification example."""
    f = record.fields
    if record.format == "chat":
        return [m for m in f["messages"] if m["role"] == "assistant"][-1]["content"].strip()
    return (f.get("output") or f.get("completion") or f.get("text") or "").strip()


def balance_labels(records: list[Record], seed: int) -> list[Record]:
    """Oversample (seeded) so every label appears as often as the most common one."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(label_of(r), []).append(r)
    if len(groups) > max(16, len(records) // 10):
        raise UserError(f"data.balance found {len(groups)} distinct answers in "
                        f"{len(records)} records: this does not look like labelled data",
                        key="data.balance", hint="use it only for label-only (classifier) data")
    rng = np.random.default_rng([seed, 7])
    top = max(len(g) for g in groups.values())
    out = list(records)
    for label in sorted(groups):
        g = groups[label]
        out += [g[i] for i in rng.integers(0, len(g), top - len(g))]
    return out


def load_splits(spec, tok, seed: int) -> Splits:
    """Read, split, and tokenize every split of a DataSpec."""
    mix: dict[str, dict] = {}
    records = read_splits(spec, seed, mix)
    out = Splits([], [], [], files=train_files(spec) + list(spec.valid) + list(spec.test),
                  mix=mix)
    for name, recs in records.items():
        if recs and recs[0].format in PREFERENCE:  # data/preference.py renders these
            raise UserError(f"{recs[0].format} records train only with train.objective: "
                            f"{recs[0].format}", file=recs[0].file, line=recs[0].line,
                            hint=f"set train.objective={recs[0].format}, or give SFT data")
        samples, stats = render_records(recs, tok, spec) if recs else ([], RenderStats())
        setattr(out, name, samples)
        out.stats[name] = stats
    if not out.train:
        raise UserError("every training sample was dropped (too long, or nothing to train)",
                        key="data.max_seq_length", hint="raise data.max_seq_length or use "
                        "data.truncation=truncate")
    return out
