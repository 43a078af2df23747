"""choice: multiple-choice questions scored by the log-likelihood of each choice after the
rendered question (no generation), the offline forgetting check for MMLU/KMMLU-style sets.
accuracy picks the choice with the highest summed log-probability; accuracy_norm the highest per
token (longer choices are not penalised)."""

from __future__ import annotations

import numpy as np

from ...data.batching import collate
from ...data.formats import Record
from ...data.render import Sample
from ..suitedata import read_choices


def samples(ctx, items) -> tuple[list[Sample], list[int]]:
    """One sample per (question, choice): prompt ids + choice ids, only the choice trained;
    and the item index of each sample."""
    out, owner = [], []
    for k, item in enumerate(items):
        record = Record("completions", {"prompt": item.question, "completion": ""},
                        item.file, item.line)
        prompt, _ = ctx.prompt(record)
        for choice in item.choices:
            cont = ctx.tok(choice, add_special_tokens=False)["input_ids"]
            ids = np.asarray(prompt + cont, dtype=np.int32)
            mask = np.r_[np.zeros(len(prompt), bool), np.ones(len(cont), bool)]
            out.append(Sample(ids, mask, item.where))
            owner.append(k)
    return out, owner


def run(ctx, suite) -> dict:
    items = read_choices(suite.data, suite.limit)
    rows, owner = samples(ctx, items)
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i].ids), i))  # similar widths
    logp, count = np.zeros(len(rows)), np.zeros(len(rows))
    for k in range(0, len(order), suite.batch_size):
        chunk = order[k : k + suite.batch_size]
        batch = collate(rows, [[i] for i in chunk], ctx.pad_id, packed=False)
        s, n = ctx.backend.sequence_logprobs(batch)
        logp[chunk], count[chunk] = s, n
    correct = correct_norm = 0
    picks = []
    for k, item in enumerate(items):
        idx = [i for i, o in enumerate(owner) if o == k]
        best = int(np.argmax(logp[idx]))
        best_norm = int(np.argmax(logp[idx] / np.maximum(count[idx], 1)))
        correct += best == item.answer
        correct_norm += best_norm == item.answer
        picks.append({"where": item.where, "answer": item.answer, "picked": best,
                      "logprobs": [round(float(x), 4) for x in logp[idx]]})
    n = len(items)
    return {"metrics": {"accuracy": correct / n, "accuracy_norm": correct_norm / n, "n": n},
            "items": picks[:50]}
