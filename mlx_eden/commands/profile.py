"""`eden-mlx profile`: a few real training steps on worst-case synthetic batches, and the
measured memory next to the planner's prediction, part by part."""

from __future__ import annotations

import json

import click

from . import set_option
from .plan import device_option


@click.command()
@click.argument("recipe_file", type=click.Path())
@set_option
@device_option
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="Optimizer steps.")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="Measure the memory the run needs (MLX waits for work in flight before "
                   "each op; slower) instead of how far MLX's scheduler runs ahead within the "
                   "budget.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def profile(recipe_file, overrides, device, budget_gb, steps, strict, as_json):
    """Train RECIPE_FILE for --steps steps on synthetic full-length batches (no data needed)
    and print predicted vs measured memory per component."""
    from ..hub import resolve_model
    from ..memory.compare import compare
    from ..memory.measure import run_profile
    from ..memory.session import plan_recipe
    from ..recipe import load_recipe
    from ..ui.memoryplan import render_comparison

    recipe = load_recipe(recipe_file, overrides)
    plan, _ = plan_recipe(recipe, device, budget_gb)
    model_dir = resolve_model(recipe.model.path, recipe.model.revision)
    measured = run_profile(recipe, model_dir, steps, strict=strict,
                           budget_bytes=plan.budget_bytes)
    rows = compare(plan, measured)
    if as_json:
        click.echo(json.dumps({"predicted": plan.to_json(), "measured": measured.to_dict(),
                               "rows": rows}, indent=2, default=str))
    else:
        render_comparison(plan, measured, rows)
