"""What `eden-mlx train` does before loading anything: plan the run's memory, apply --fit, and
refuse a run that will not fit (exit 3) unless --force."""

from __future__ import annotations

from pathlib import Path

from ..backends.base import detect_world
from ..errors import UserError
from ..recipe import Recipe
from ..run.runplan import RunPlan
from ..units import gib
from .fit import command, user_flags, with_overrides
from .session import plan_recipe


class DoesNotFit(Exception):
    """The planned peak is above the budget; str() is the one line the CLI prints."""


def preflight(recipe: Recipe, *, device: str | None = None, budget_gb: float | None = None,
              fit: bool = False, force: bool = False, recipe_file: str = "RECIPE",
              overrides=(), say=print) -> tuple[Recipe, RunPlan | None]:
    """(the recipe to train, what the plan hands to the run; None when there is no plan).
    `budget_gb` is GiB, like every memory figure. `overrides`: the user's --set values,
    repeated in the suggested commands."""
    try:
        plan, fitted = plan_recipe(recipe, device, budget_gb, fit, detect_world().size)
    except UserError as e:
        # An unknown Hub id has no config here before its download, which names any problem
        # itself: a second line about the plan would only bury that one.
        if Path(recipe.model.path or "").expanduser().is_dir():
            say(f"memory plan skipped: {e}")
        return recipe, None
    if fitted is not None and fitted.changes:
        recipe = with_overrides(recipe, fitted.overrides)
        plan = fitted.plan
        say("fit: " + ", ".join(f"{c.key}={c.new}" for c in fitted.changes))
    if not plan.fits and not force:
        e = plan.estimate
        top = sorted(((v, k) for k, v in e.components.items() if k != "base weights"),
                     reverse=True)[:2]
        parts = ", ".join(f"{k} {gib(v)}" for v, k in top)
        flags = user_flags(overrides, device, budget_gb)
        tried = "" if not fit else " even with --fit's changes"
        raise DoesNotFit(
            f"does not fit{tried}: predicted peak {gib(plan.predicted_peak_bytes)} > budget "
            f"{gib(plan.budget_bytes)} on {plan.device.name} (base weights "
            f"{gib(e.components['base weights'])}, {parts}); "
            + ("" if fit else f"`{command('plan', recipe_file, flags, '--fit')}` shows the "
               f"changes that fit, `{command('train', recipe_file, flags, '--fit')}` applies "
               "them, ") + "--force tries anyway")
    return recipe, RunPlan(plan.predicted_peak_bytes, plan.budget_bytes, plan.device.name)
