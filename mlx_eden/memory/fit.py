"""`--fit`: the cheapest recipe changes that make a run fit its memory budget.

Knobs are tried in order of what they cost the run: the same effective batch in smaller
micro-batches, gradient checkpointing, a chunked loss, a lighter optimizer state, shorter
samples, fewer adapted layers, a lower rank. Within a knob the mildest setting that fits wins;
when none fits, its strongest setting is kept and the next knob is tried.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..recipe import Recipe, recipe_from_dict
from ..registry import optimizer_spec
from .devices import Device
from .planner import Plan, make_plan
from .shapes import ModelShape


@dataclass(frozen=True)
class Change:
    key: str
    old: object
    new: object
    why: str


def with_overrides(recipe: Recipe, overrides: dict) -> Recipe:
    """A copy of `recipe` with dotted-key overrides applied (validated like --set)."""
    tree = recipe.to_dict()
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return recipe_from_dict(tree)


def _micro_batches(r: Recipe) -> list[dict]:
    t = r.train
    effective = t.batch_size * t.grad_accumulation
    return [{"train.batch_size": b, "train.grad_accumulation": effective // b}
            for b in range(t.batch_size - 1, 0, -1) if effective % b == 0]


def _checkpointing(r: Recipe) -> list[dict]:
    return [] if r.train.grad_checkpoint else [{"train.grad_checkpoint": True}]


def _chunked_loss(r: Recipe) -> list[dict]:
    if r.train.loss_chunk:
        return []
    tokens = r.train.batch_size * r.data.max_seq_length
    return [{"train.loss_chunk": c} for c in (1024, 512, 256, 128) if c < tokens]


def _optimizer(r: Recipe) -> list[dict]:
    return [{"train.optimizer": o} for o in optimizer_spec(r.train.optimizer).lighter]


def _sequence(r: Recipe) -> list[dict]:
    n = r.data.max_seq_length
    out = []
    for f in (0.75, 0.5, 0.25):
        m = int(n * f) // 64 * 64
        if 256 <= m < n:
            out.append({"data.max_seq_length": m})
    return out


def _layers(r: Recipe, shape: ModelShape) -> list[dict]:
    n = shape.layers if r.adapter.layers == -1 else r.adapter.layers
    return [{"adapter.layers": k} for k in (n * 3 // 4, n // 2, n // 4) if 1 <= k < n]


def _rank(r: Recipe) -> list[dict]:
    """Rank / d with alpha scaled so the update scale (AdapterSpec.scale) stays the same:
    alpha / d for alpha/r, alpha / sqrt(d) for rsLoRA's alpha/sqrt(r)."""
    a = r.adapter
    return [{"adapter.rank": a.rank // d, "adapter.alpha": a.alpha / (d ** 0.5 if a.rslora else d)}
            for d in (2, 4, 8) if a.rank // d >= 4]


KNOBS = [
    ("smaller micro-batches, same effective batch", lambda r, s: _micro_batches(r)),
    ("gradient checkpointing", lambda r, s: _checkpointing(r)),
    ("chunked loss", lambda r, s: _chunked_loss(r)),
    ("lighter optimizer state", lambda r, s: _optimizer(r)),
    ("shorter max sequence", lambda r, s: _sequence(r)),
    ("fewer adapted layers", lambda r, s: _layers(r, s)),
    ("lower rank (alpha scaled with it, same update scale)", lambda r, s: _rank(r)),
]


@dataclass
class FitResult:
    plan: Plan
    changes: list[Change]
    overrides: dict

    @property
    def fits(self) -> bool:
        return self.plan.fits

    def set_flags(self) -> tuple[str, ...]:
        """The changes as command-line flags: ("--set", "k=v", ...)."""
        return tuple(x for k, v in self.overrides.items() for x in ("--set", f"{k}={_yaml(v)}"))

    def set_args(self) -> str:
        return " ".join(self.set_flags())


def _yaml(v) -> str:
    return "true" if v is True else "false" if v is False else f"{v:g}" \
        if isinstance(v, float) else str(v)


def search(recipe: Recipe, shape: ModelShape, device: Device, source: str = "",
           ranks: int = 1) -> FitResult:
    """The recipe changes (cumulative, mildest first) after which the plan fits, or the
    strongest combination when nothing fits."""
    overrides: dict = {}
    why: dict = {}
    plan = make_plan(recipe, shape, device, source, ranks)
    for name, knob in KNOBS:
        if plan.fits:
            break
        current = with_overrides(recipe, overrides)
        options = knob(current, shape)
        for option in options:
            trial = make_plan(with_overrides(recipe, {**overrides, **option}), shape, device,
                              source, ranks)
            if trial.fits or option is options[-1]:
                if trial.predicted_peak_bytes < plan.predicted_peak_bytes:
                    overrides.update(option)
                    why.update({k: name for k in option})
                    plan = trial
                if trial.fits:
                    break
    original = recipe.to_dict()
    changes = [Change(k, _get(original, k), v, why[k]) for k, v in overrides.items()]
    return FitResult(plan, changes, overrides)


def _get(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


# --------------------------------------------------------------------------- suggestions

def command(verb: str, recipe_file: str, flags: tuple = (), *more: str) -> str:
    """`eden-mlx VERB RECIPE` with the user's own flags (--set/--device/--budget-gb, as given)
    kept, so that running a suggestion literally plans the same thing; shell-quoted."""
    return shlex.join(["eden-mlx", verb, str(recipe_file), *flags, *more])


def user_flags(overrides=(), device: str | None = None, budget_gb: float | None = None) -> tuple:
    """The command-line flags that changed what was planned, in a stable order."""
    out = [x for o in overrides for x in ("--set", o)]
    if device:
        out += ["--device", device]
    if budget_gb is not None:
        out += ["--budget-gb", f"{budget_gb:g}"]
    return tuple(out)


def without_keys(flags: tuple, fit: FitResult) -> tuple:
    """The user's flags minus the --set values the fit replaces (one value per key)."""
    out, i = [], 0
    while i < len(flags):
        if flags[i] == "--set" and flags[i + 1].split("=", 1)[0] in fit.overrides:
            i += 2
            continue
        out.append(flags[i])
        i += 1
    return tuple(out)
