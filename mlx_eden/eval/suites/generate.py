"""generate: greedy answers to prompts, each put through the suite's checks; success_rate is the
share that pass all of them, and every failure is listed with its reasons."""

from __future__ import annotations

from ..checks import failures
from ..suitedata import read_prompts


def answers(ctx, suite, records=None):
    """(records, references, generated ids, decoded answers) for a prompt suite."""
    records = records if records is not None else read_prompts(suite.data, suite.limit)
    prompts, refs = zip(*(ctx.prompt(r) for r in records), strict=True)
    ids = ctx.generate(list(prompts), suite.max_new_tokens, suite.batch_size)
    return records, list(refs), ids, [ctx.decode(a) for a in ids]


def run(ctx, suite) -> dict:
    records, refs, ids, texts = answers(ctx, suite)
    failed = []
    for r, ref, a_ids, text in zip(records, refs, ids, texts, strict=True):
        why = failures(suite.checks, text, a_ids, ref)
        if why:
            failed.append({"where": r.where, "answer": text[:400], "reasons": why})
    n = len(records)
    return {"metrics": {"success_rate": (n - len(failed)) / n,
                        "mean_tokens": sum(map(len, ids)) / n, "n": n},
            "failures": failed,
            "samples": [{"where": r.where, "answer": t[:400]} for r, t in
                        zip(records[:10], texts[:10], strict=False)]}
