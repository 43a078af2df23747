"""DPO and KTO records -> tokenized items -> batches of rows for the preference objectives.

A DPO item is two samples (prompt + chosen, prompt + rejected); a KTO item is its answer and a
mismatched twin (its prompt with the next record's answer, cyclic in file order) whose
log-ratio estimates KTO's KL reference point. Each sample is the record rendered exactly as an
SFT record (render.record_text, the same chat template / none / alpaca handling) with only the
final answer's span trained: the prompt, earlier turns included, is never trained.

A batch holds batch_size items as rows [first samples..., second samples...], one sample per row
(no packing: a row's log-probability is then one sum, and both halves of a pair share a width).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ..errors import UserError
from .batching import PAD_MULTIPLE, Batch, FixedBatches, _round_up, _serve, choose_widths, collate
from .formats import Record
from .render import Sample, record_text, tokenize_text


@dataclass
class PreferenceBatch(Batch):
    """A Batch of 2 x items rows plus what the objective needs: the reference log-probability
    of every row (None during the reference pass), the KTO labels (1.0 = thumbs up), the
    answer-token count of every row, and which samples the rows are (to store references)."""

    objective: str = "dpo"
    items: int = 0
    labels: np.ndarray | None = None
    reference: np.ndarray | None = None
    counts: np.ndarray | None = None
    sample_ids: np.ndarray | None = None

    @property
    def trained_tokens(self) -> int:
        rows = self.mask if self.objective == "dpo" else self.mask[: self.items]  # KL rows: no
        return int(rows.sum())


@dataclass
class Item:
    samples: tuple[Sample, Sample]
    label: bool | None = None


def _as_record(r: Record, prompt, answer: str) -> Record:
    if isinstance(prompt, str):
        return Record("completions", {"prompt": prompt, "completion": answer}, r.file, r.line)
    messages = list(prompt) + [{"role": "assistant", "content": answer}]
    return Record("chat", {"messages": messages}, r.file, r.line)


def _sample(r: Record, prompt, answer: str, tok, spec) -> Sample | None:
    text, spans = record_text(_as_record(r, prompt, answer), tok, replace(spec, mask_prompt=True))
    s = tokenize_text(tok, text, spans[-1:])  # the final answer only
    s.where = r.where
    if len(s.ids) > spec.max_seq_length:
        if spec.truncation == "drop":
            return None
        s = Sample(s.ids[: spec.max_seq_length], s.mask[: spec.max_seq_length], s.where)
    return s if s.trained else None


def render_items(records: list[Record], tok, spec) -> tuple[list[Item], int]:
    """Tokenized items and the number dropped (too long, or no answer token left)."""
    kinds = {r.format for r in records}
    if len(kinds) > 1 or not kinds <= {"dpo", "kto"}:
        r = next(r for r in records if r.format not in ("dpo", "kto")) if kinds - {"dpo", "kto"} \
            else records[0]
        raise UserError(f"a preference run needs dpo or kto records only, found {r.format}",
                        file=r.file, line=r.line, hint="dpo: prompt/chosen/rejected; kto: "
                        "prompt/completion/label (one kind per run)")
    items, dropped = [], 0
    for i, r in enumerate(records):
        f = r.fields
        if r.format == "dpo":
            pair = (_sample(r, f["prompt"], f["chosen"], tok, spec),
                    _sample(r, f["prompt"], f["rejected"], tok, spec))
            label = None
        else:
            twin = records[(i + 1) % len(records)].fields["completion"]
            pair = (_sample(r, f["prompt"], f["completion"], tok, spec),
                    _sample(r, f["prompt"], twin, tok, spec))
            label = f["label"]
        if pair[0] is None or pair[1] is None:
            dropped += 1
            continue
        items.append(Item(pair, label))
    return items, dropped


def preferred_records(records: list[Record]) -> list[Record]:
    """SFT records of the preferred answers (DPO: chosen; KTO: label true) and the rest as is:
    what a loss suite measures on a preference run's held-out split (the rewards need the
    reference pass; the run's own eval events carry them)."""
    out = []
    for r in records:
        f = r.fields
        if r.format == "dpo":
            out.append(_as_record(r, f["prompt"], f["chosen"]))
        elif r.format == "kto":
            if f["label"]:
                out.append(_as_record(r, f["prompt"], f["completion"]))
        else:
            out.append(r)
    return out


def objective_of(records: list[Record]) -> str | None:
    return records[0].format if records and records[0].format in ("dpo", "kto") else None


class PreferencePlan(FixedBatches):
    """The fixed batches of a preference split (same interface as batching.BatchPlan) and the
    reference log-probability of every sample once the reference pass has filled it."""

    packing = False

    def __init__(self, items: list[Item], batch_size: int, pad_id: int, objective: str,
                 seed: int = 0):
        if not items:
            raise ValueError("no items to batch")
        self.items, self.pad_id, self.objective, self.seed = items, pad_id, objective, seed
        n = len(items)
        self.samples = [it.samples[0] for it in items] + [it.samples[1] for it in items]
        self.reference: np.ndarray | None = None
        order = sorted(range(n), key=lambda i: (max(len(s.ids) for s in items[i].samples), i))
        self.batches = [order[k : k + batch_size] for k in range(0, n, batch_size)]
        needs = [_round_up(max(len(s.ids) - 1 for i in b for s in items[i].samples),
                           PAD_MULTIPLE) for b in self.batches]
        widths = choose_widths(needs, [len(b) for b in self.batches])
        self.widths = [_serve(widths, w) for w in needs]

    def __len__(self) -> int:
        return len(self.batches)

    def batch(self, index: int) -> PreferenceBatch:
        items, n = self.batches[index], len(self.items)
        ids = np.asarray(items + [i + n for i in items])
        b = collate(self.samples, [[int(i)] for i in ids], self.pad_id, False, self.widths[index])
        labels = np.asarray([1.0 if self.items[i].label else 0.0 for i in items], np.float32)
        return PreferenceBatch(
            b.inputs, b.targets, b.mask, b.segments, False, objective=self.objective,
            items=len(items), labels=labels, counts=b.mask.sum(axis=1),
            reference=None if self.reference is None else self.reference[ids],
            sample_ids=ids)

    @property
    def trained_tokens(self) -> int:
        return sum(it.samples[0].trained + (it.samples[1].trained if self.objective == "dpo"
                                            else 0) for it in self.items)

    def digest(self) -> str:
        """SHA-256 of every row's tokens and answer mask: the key of the stored reference."""
        h = hashlib.sha256(self.objective.encode())
        for s in self.samples:
            h.update(s.ids.tobytes())
            h.update(s.mask.tobytes())
        return h.hexdigest()


def load_preference(spec, tok, seed: int, objective: str):
    """Read, split and tokenize a recipe's DPO/KTO data: a splits.Splits of Items."""
    from .render import RenderStats
    from .splits import Splits, read_splits
    from .weights import train_files

    mix: dict[str, dict] = {}
    records = read_splits(spec, seed, mix)
    out = Splits([], [], [], files=train_files(spec) + list(spec.valid) + list(spec.test),
                 mix=mix)
    for name in ("train", "valid"):
        recs = records[name]
        found = objective_of(recs)
        if recs and found != objective:
            r = recs[0]
            raise UserError(f"train.objective is {objective} but the {name} data is "
                            f"{found or r.format}", file=r.file, line=r.line,
                            hint="dpo needs prompt/chosen/rejected records, kto "
                            "prompt/completion/label")
        items, dropped = render_items(recs, tok, spec) if recs else ([], 0)
        setattr(out, name, items)
        out.stats[name] = RenderStats(samples=len(items), dropped=dropped)
    out.stats["test"] = RenderStats()
    if not out.train:
        raise UserError("every preference item was dropped (too long, or no answer left)",
                        key="data.max_seq_length", hint="raise data.max_seq_length")
    return out
