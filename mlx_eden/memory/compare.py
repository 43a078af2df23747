"""Predicted vs measured memory, in the parts a profile run can measure on its own.

A run measures phases, not components, so each row pairs a measured quantity with the
predicted components it consists of:

    resident    active after the steps: base weights + adapters + optimizer state
    forward     kept at the end of the forward pass: saved activations + the loss's logits
    backward    the backward phase's peak over resident: activations + loss / layer buffers
    update      the update phase's peak over resident: gradients + one update group
    peak        the whole run's peak (weights loading, every step, one evaluation); predicted
                without the headroom, which only the budget check adds

Arithmetic only: ui/memoryplan.py renders the rows.
"""

from __future__ import annotations

from .loss import loss_saved
from .measure import Measurement
from .planner import Plan


def _predicted(plan: Plan) -> dict[str, int]:
    e, s = plan.estimate, plan.settings
    resident = e.sizes["base weights"] + e.sizes["adapters"] + e.sizes["optimizer state"]
    backward = max(v for k, v in e.phases.items() if k.startswith("backward"))
    return {"resident": resident,
            "forward": e.sizes["saved activations"] + loss_saved(plan.shape, s.work(),
                                                                 s.loss_chunk),
            "backward": backward - resident,
            "update": e.phases["update"] - resident,
            "peak": e.needed}


def _measured(m: Measurement) -> dict[str, int]:
    last = max(s.step for s in m.samples)
    phase = {s.phase: s for s in m.samples if s.step == last}
    before = m.resident
    return {"resident": m.resident,
            "forward": phase["forward"].active - before if "forward" in phase else 0,
            "backward": m.phases.get("backward", 0) - before,
            "update": m.phases.get("update", 0) - before,
            "peak": m.peak}


def compare(plan: Plan, measured: Measurement) -> list[dict]:
    p, m = _predicted(plan), _measured(measured)
    return [{"part": k, "predicted": p[k], "measured": m[k],
             "error": (p[k] - m[k]) / m[k] if m[k] else None} for k in p]
