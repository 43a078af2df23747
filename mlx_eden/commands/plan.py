"""`eden-mlx plan`: will this recipe fit, before anything is loaded? Exit 0 fits, 3 does not."""

from __future__ import annotations

import json
import sys

import click

from ..registry import EXIT_DOES_NOT_FIT
from . import POSITIVE, set_option


def device_option(f):
    f = click.option("--budget-gb", type=POSITIVE, default=None,
                     help="Memory budget in GiB (Apple's GB), instead of the device's.")(f)
    return click.option("--device", default=None, metavar="NAME",
                        help="this (default), mac-16gb ... mac-192gb (m3-max-36gb), "
                             "epyc-256gb, cpu-64gb.")(f)


@click.command()
@click.argument("recipe_file", type=click.Path())
@set_option
@device_option
@click.option("--fit", "fit", is_flag=True,
              help="If it does not fit, find the cheapest recipe changes that make it fit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--ranks", type=click.IntRange(min=1), default=None, help="Data-parallel "
              "processes (torchrun / mlx.launch): prices each rank's communication buffer and "
              "prints the all-reduce payload. Default: the launcher's, else 1.")
def plan(recipe_file, overrides, device, budget_gb, fit, as_json, ranks):
    """Predict the peak memory of training RECIPE_FILE, component by component, against the
    device's budget. Reads only config.json (or a shipped config for known Qwen models)."""
    from ..backends.base import detect_world
    from ..memory.fit import user_flags
    from ..memory.session import plan_recipe
    from ..recipe import load_recipe
    from ..ui.memoryplan import render_data_peak, render_fit, render_plan

    recipe = load_recipe(recipe_file, overrides)
    result, fitted = plan_recipe(recipe, device, budget_gb, fit, ranks or detect_world().size)
    final = fitted.plan if fitted else result  # what --json reports (after the changes)
    shapes, why = _data_shapes(recipe)
    if as_json:
        from ..memory.verify import verify_plan

        out = final.to_json()
        out["verify_phases"] = verify_plan(final).phases
        out["data_peak"] = _data_json(result, shapes, why)
        if fitted:
            out["fit"] = {"original_peak_bytes": result.predicted_peak_bytes,
                          "fits_as_given": result.fits,
                          "changes": [c.__dict__ for c in fitted.changes],
                          "set": fitted.set_args()}
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        render_plan(result)
        render_data_peak(result, shapes, why)
        if fitted:
            render_fit(fitted, recipe_file, flags=user_flags(overrides, device, budget_gb),
                       train_fits=_trains_on_mlx(recipe))
    # The exit code answers "does this recipe, as given, fit?": with --fit too, so that a
    # script gating on `plan --fit` does not go on to train a recipe that will be refused.
    # The changes that fit are printed (and in --json's "fit"); `train --fit` applies them.
    sys.exit(0 if result.fits else EXIT_DOES_NOT_FIT)


def _data_shapes(recipe):
    """The training data's micro-batch shapes (data/longest.py), or (None, why not)."""
    from ..data.longest import data_shapes

    return data_shapes(recipe)


def _data_json(plan, shapes, why: str) -> dict:
    """--json's "data_peak": the peak of the data's largest micro-batch, or why it is absent."""
    from ..memory.planner import data_peak

    if shapes is None:
        return {"computed": False, "why": why}
    d = data_peak(plan, shapes.shapes)
    return {"computed": True, "predicted_peak_bytes": d.peak, "fits": d.fits,
            "batch_rows": d.rows, "batch_width": d.width, "widest_batch": shapes.widest,
            "longest_sample_tokens": shapes.longest_sample, "samples": shapes.samples,
            "max_seq_length": plan.settings.seq, "files": list(shapes.files)}


def _trains_on_mlx(recipe) -> bool:
    """Will `eden-mlx train` run this recipe on MLX (where --fit applies the plan)?"""
    from ..backends.base import choose_backend
    from ..errors import UserError

    try:
        name, _ = choose_backend(recipe.train.backend, recipe)
    except UserError:  # torch requested without the extra (or refused): not an MLX run
        return False
    return name == "mlx"
