"""Learning-rate schedules, computed on the host so both backends get the same number."""

from __future__ import annotations

import math


def warmup_steps(total: int, warmup_steps: int, warmup_ratio: float) -> int:
    return warmup_steps if warmup_steps else int(math.ceil(warmup_ratio * total))


def learning_rate(step: int, *, peak: float, total: int, warmup: int, kind: str,
                  min_ratio: float = 0.0) -> float:
    """The rate for optimizer step `step` (1-based): linear warmup from 0, then constant, linear
    or cosine decay to peak * min_ratio at the last step (as in transformers' schedulers)."""
    if warmup and step <= warmup:
        return peak * step / warmup
    if kind == "constant":
        return peak
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    floor = peak * min_ratio
    if kind == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
