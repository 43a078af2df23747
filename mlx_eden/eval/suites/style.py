"""style: the same prompts under two or more control prefixes; mean output tokens per prefix and
ratio = mean under the last prefix / mean under the first (e.g. VERBOSE over TERSE)."""

from __future__ import annotations

import dataclasses

from ..suitedata import read_prompts
from .generate import answers


def with_prefix(record, prefix: str, place: str):
    """The record with `prefix` in its system prompt, or in front of its (last) user message."""
    f = record.fields
    if record.format == "chat":
        messages = [dict(m) for m in f["messages"]]
    elif record.format == "alpaca":
        user = f["instruction"] + (f"\n\n{f['input']}" if f["input"] else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": f["output"]}]
    else:
        messages = [{"role": "user", "content": f["prompt"]},
                    {"role": "assistant", "content": f["completion"]}]
    if place == "system":
        if messages[0]["role"] == "system":
            messages[0]["content"] = f"{prefix}\n{messages[0]['content']}"
        else:
            messages.insert(0, {"role": "system", "content": prefix})
    else:
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last]["content"] = f"{prefix} {messages[last]['content']}"
    return dataclasses.replace(record, format="chat", fields={"messages": messages})


def run(ctx, suite) -> dict:
    records = read_prompts(suite.data, suite.limit)
    means = {}
    for prefix in suite.prefixes:
        _, _, ids, _ = answers(ctx, suite, [with_prefix(r, prefix, suite.place) for r in records])
        means[prefix] = sum(map(len, ids)) / len(ids)
    first, last = means[suite.prefixes[0]], means[suite.prefixes[-1]]
    # An empty first style would divide by zero; one token is the floor of a real answer.
    return {"metrics": {"ratio": last / max(first, 1.0), "mean_tokens_first": first,
                        "mean_tokens_last": last, "n": len(records)},
            "mean_tokens": means}
