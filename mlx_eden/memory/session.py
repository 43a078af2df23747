"""The planner as the CLI uses it: find the config, the device and its budget, plan, fit."""

from __future__ import annotations

import platform

from ..recipe import Recipe
from .devices import Device, get_device, with_budget
from .fit import FitResult, search
from .planner import Plan, make_plan
from .shapes import load_config, shape_from_config


def live_working_set() -> int | None:
    """On Apple Silicon, the GPU working set Metal recommends, read from MLX (the only import of
    a backend here, and only on a Mac)."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return None
    try:
        from ..backends.mlx.memory import device_limits
    except ImportError:
        return None
    value = device_limits().get("max_recommended_working_set_size")
    return int(value) if value else None


def resolve_device(name: str | None, budget_gb: float | None) -> Device:
    live = live_working_set() if (name or "this").lower() in ("this", "auto", "local") else None
    return with_budget(get_device(name, live), budget_gb)


def plan_recipe(recipe: Recipe, device_name: str | None = None, budget_gb: float | None = None,
                fit: bool = False, ranks: int = 1) -> tuple[Plan, FitResult | None]:
    """The plan of `recipe` (per rank of `ranks` data-parallel processes) and, with `fit` and
    when it does not fit, the fit search."""
    cfg, source = load_config(recipe.model.path, recipe.model.revision)
    shape = shape_from_config(cfg)
    device = resolve_device(device_name, budget_gb)
    result = make_plan(recipe, shape, device, source, ranks)
    fitted = search(recipe, shape, device, source, ranks) if fit and not result.fits else None
    return result, fitted
