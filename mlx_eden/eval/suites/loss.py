"""loss: mean loss and perplexity over a file or split, rendered and masked as in training."""

from __future__ import annotations

import math

from ...data.batching import BatchPlan
from ...data.render import render_records
from ...errors import UserError


def run(ctx, suite) -> dict:
    records = ctx.training_records(suite)
    samples, _ = render_records(records, ctx.tok, ctx.recipe.data)
    if not samples:
        raise UserError(f"suite {suite.name!r}: no record has trained tokens",
                        file=suite.data or None, hint="check data.max_seq_length and the records")
    plan = BatchPlan(samples, suite.batch_size, ctx.recipe.data.max_seq_length, ctx.pad_id)
    total, tokens = 0.0, 0
    for batch in plan.in_order():
        s, n = ctx.backend.eval_loss(batch)
        total, tokens = total + s, tokens + n
    loss = total / tokens
    return {"metrics": {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                        "tokens": tokens}, "records": len(records)}
