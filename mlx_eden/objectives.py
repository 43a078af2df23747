"""The DPO and KTO losses, written once for both backends.

Each backend passes its own array ops (`Ops`: log_sigmoid, sigmoid, maximum, stop_gradient, where,
and the arrays' own arithmetic), so MLX and torch run the same formula and the TRL comparison in
tests/test_preference.py covers both. Inputs are per-row sequence log-probabilities (sum over the
answer tokens) of the policy and of the reference; a DPO batch holds its n chosen rows, then its
n rejected rows; a KTO batch its n answers, then n mismatched (prompt i, answer i+1) rows whose
log-ratio estimates the KL reference point (detached, as in the KTO paper and TRL).

Every function returns the *summed* per-item loss and summed metrics: the caller divides by the
items of all accumulated micro-batches, so accumulation gives the same step as one big batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Ops:
    log_sigmoid: Any
    sigmoid: Any
    maximum: Any  # (array, float) -> array
    stop_gradient: Any
    where: Any
    to_float: Any  # scalar array -> python float


def dpo(ops: Ops, pi, ref, counts, n: int, t) -> tuple[Any, dict]:
    """DPO (sigmoid with label smoothing, the conservative-DPO form) or IPO over length-averaged
    log-ratios (TRL's choice); t is the recipe's TrainSpec."""
    if t.dpo_loss == "ipo":
        pi, ref = pi / counts, ref / counts
    chosen, rejected = pi[:n] - ref[:n], pi[n:] - ref[n:]
    delta = chosen - rejected
    if t.dpo_loss == "ipo":
        losses = (delta - 1.0 / (2.0 * t.beta)) ** 2
    else:
        ls = t.label_smoothing
        losses = (-ops.log_sigmoid(t.beta * delta) * (1.0 - ls)
                  - ops.log_sigmoid(-t.beta * delta) * ls)
    # Accuracy counts a tie as half (TRL counts it 0): before any update every reward is 0, and
    # "the policy cannot tell the pair apart" is chance, 0.5.
    rc = ops.stop_gradient(t.beta * chosen)
    rr = ops.stop_gradient(t.beta * rejected)
    metrics = {"reward_chosen": rc.sum(), "reward_rejected": rr.sum(),
               "reward_accuracy": (rc > rr).sum() + 0.5 * (rc == rr).sum(), "reward_margin": (rc - rr).sum()}
    return losses.sum(), metrics


def kto(ops: Ops, pi, ref, labels, n: int, t) -> tuple[Any, dict]:
    """KTO (paper eq. 7, TRL's `loss_type="kto"`): the KL reference point is the batch mean of
    the mismatched rows' log-ratios, clamped at 0 and detached; labels: 1.0 desirable."""
    kl = ops.maximum(ops.stop_gradient(pi[n:] - ref[n:]).mean(), 0.0)
    ratio = pi[:n] - ref[:n]
    good = labels > 0.5
    losses = ops.where(good, t.desirable_weight * (1.0 - ops.sigmoid(t.beta * (ratio - kl))),
                       t.undesirable_weight * (1.0 - ops.sigmoid(t.beta * (kl - ratio))))
    reward = ops.stop_gradient(t.beta * ratio)
    zero = reward * 0.0
    metrics = {"reward_desirable": ops.where(good, reward, zero).sum(),
               "reward_undesirable": ops.where(good, zero, reward).sum(),
               "desirable": good.sum(), "kl": kl * n}
    return losses.sum(), metrics


def compute(ops: Ops, objective: str, pi, ref, counts, labels, n: int, t):
    """(summed loss, summed metrics) of one preference micro-batch."""
    if objective == "dpo":
        return dpo(ops, pi, ref, counts, n, t)
    return kto(ops, pi, ref, labels, n, t)


def finish(sums: dict, items: int) -> dict:
    """Metric sums of any number of micro-batches -> the reported means (per item; KTO's
    per-label rewards per item of that label)."""
    out = {}
    if "reward_chosen" in sums:
        for k in ("reward_chosen", "reward_rejected", "reward_accuracy", "reward_margin"):
            out[k] = sums[k] / max(items, 1)
    else:
        good = sums["desirable"]
        bad = items - good
        out["reward_desirable"] = sums["reward_desirable"] / good if good else float("nan")
        out["reward_undesirable"] = sums["reward_undesirable"] / bad if bad else float("nan")
        out["kl"] = sums["kl"] / max(items, 1)
    return out


def add(into: dict, more: dict, to_float) -> dict:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + to_float(v)
    return into


SHORT = {"reward_accuracy": "acc", "reward_margin": "margin", "reward_chosen": "chosen",
         "reward_rejected": "rejected", "reward_desirable": "desirable",
         "reward_undesirable": "undesirable", "kl": "KL"}


def describe(metrics: dict) -> str:
    """One line of the preference metrics for the log, the dashboard and the report."""
    return " ".join(f"{SHORT.get(k, k)}={v:.3f}" for k, v in metrics.items())
