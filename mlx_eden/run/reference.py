"""The DPO/KTO reference pass: the starting model's log-probability of every train and valid
row, computed once before any update and kept in the run directory.

The reference policy is the model before the run (the base, or the base plus adapter.init_from):
that is exactly the backend right after setup(), so no second model is loaded (a 32B 4-bit
model twice does not fit 36 GB). The file is keyed by a SHA-256 of the rendered rows, the base
and the starting adapter, so a resumed run reuses it and a changed dataset recomputes it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..backends.base import Backend
from ..data.preference import PreferencePlan
from .events import Listener, ReferenceEvent

FILE = "reference.npz"


def reference_key(plans: dict[str, PreferencePlan], recipe) -> str:
    h = hashlib.sha256()
    for name in sorted(plans):
        h.update(f"{name}:{plans[name].digest()}".encode())
    h.update(f"{recipe.model.path}|{recipe.model.dtype}|{recipe.model.quantize}|"
             f"{recipe.adapter.init_from}".encode())
    if recipe.adapter.init == "loftq":  # the starting adapter is not zero: another reference
        h.update(f"|loftq{recipe.adapter.loftq_iters}".encode())
    return h.hexdigest()


def _load(path: Path, key: str, plans) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as f:
        if str(f["key"]) != key or set(f.files) != {"key", *plans}:
            return None
        return {name: f[name] for name in plans}


def reference_pass(backend: Backend, plans: dict[str, PreferencePlan], recipe, root: Path,
                   emit: Listener, step: int = 0) -> bool:
    """Fill every plan's `reference` (cached in root/reference.npz); True when it was reused."""
    key, path = reference_key(plans, recipe), root / FILE
    total = sum(len(p) for p in plans.values())
    found = _load(path, key, plans)
    if found is not None:
        for name, plan in plans.items():
            plan.reference = found[name]
        emit(ReferenceEvent(step=step, done=total, total=total, cached=True))
        return True
    done = 0
    emit(ReferenceEvent(step=step, done=0, total=total))
    out = {}
    for name, plan in plans.items():
        ref = np.zeros(len(plan.samples), dtype=np.float64)
        for batch in plan.in_order():
            ref[batch.sample_ids] = backend.preference_logprobs(batch)
            done += 1
            emit(ReferenceEvent(step=step, done=done, total=total))
        plan.reference = out[name] = ref
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp.npz")
    np.savez(tmp, key=np.asarray(key), **out)
    os.replace(tmp, path)  # a killed pass leaves no file that looks complete
    return False
