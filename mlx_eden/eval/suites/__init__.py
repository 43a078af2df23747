"""The suite kinds: one module per kind, each with `run(ctx, suite) -> {"metrics": {...}, ...}`.
recipe.SUITE_KINDS declares each kind's keys and metrics; this table says which code runs it."""

from __future__ import annotations

from . import choice, classify, generate, latency, loss, style, validate

RUNNERS = {"loss": loss.run, "classify": classify.run, "generate": generate.run,
           "validate": validate.run, "style": style.run, "choice": choice.run,
           "latency": latency.run}
