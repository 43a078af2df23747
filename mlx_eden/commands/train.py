from __future__ import annotations

import sys

import click

from ..recipe import load_recipe
from ..registry import EXIT_DOES_NOT_FIT
from . import set_option
from .plan import device_option

EXIT_CODES = {"completed": 0, "early_stopped": 0, "nan": 1, "interrupted": 130}


@click.command()
@click.argument("recipe_file", type=click.Path())
@set_option
@click.option("--output", "-o", type=click.Path(), help="Run directory (default: output.dir).")
@click.option("--resume", is_flag=True, help="Continue from the newest complete checkpoint.")
@click.option("--backend", type=click.Choice(["auto", "mlx", "torch"]), default=None,
              help="Override train.backend.")
@click.option("--no-dashboard", is_flag=True, help="Plain log lines instead of the live view.")
@device_option
@click.option("--fit", is_flag=True, help="If the memory plan does not fit, apply the cheapest "
              "recipe changes that make it fit (see `eden-mlx plan --fit`).")
@click.option("--force", is_flag=True, help="Train even if the memory plan does not fit.")
def train(recipe_file, overrides, output, resume, backend, no_dashboard, device, budget_gb,
          fit, force):
    """Fine-tune per RECIPE_FILE and write a run directory."""
    from ..backends.base import detect_world
    from ..run.phases import Phases

    phases = Phases()  # start-up: from process start to here (interpreter, click, recipe.py)
    with phases.time("planning"):
        recipe, choice, memory = _plan(recipe_file, overrides, backend, device, budget_gb, fit,
                                       force)
    with phases.time("startup"):  # the run's own imports
        from ..run.train import run_training
        from ..ui.console import console_listener
        from ..ui.tracking import trackers

    # The live dashboard on a terminal, plain lines otherwise; stopped however the run ends.
    # Trackers stay open through eval.after_train: the suites' verdict is theirs too.
    # Data parallel (torchrun / mlx.launch): the other ranks show, track and evaluate nothing.
    owner = detect_world().owner
    with trackers(recipe.output.report_to if owner else [], recipe_file) as tracking:
        with console_listener(recipe.train.log_every, no_dashboard or not owner) as listener:
            stop = run_training(recipe, output=output, resume=resume,
                                listeners=[listener, *tracking], backend=choice,
                                memory_plan=memory, phases=phases)
        code = EXIT_CODES.get(stop.status, 1)
        if code == 0 and owner and recipe.eval.after_train and recipe.eval.suites:
            code = _evaluate(recipe, output or recipe.output_dir, choice[0], tracking)
    sys.exit(code)


def _plan(recipe_file, overrides, backend, device, budget_gb, fit, force):
    """The recipe, the backend (name, why) and the memory plan (MLX only; None for torch)."""
    from ..backends.base import choose_backend, hide_torch_from_transformers

    recipe = load_recipe(recipe_file, overrides)
    choice = choose_backend(backend or recipe.train.backend, recipe)
    memory = None
    if "pip install" in choice[1]:  # auto fell back to mlx on x86: the hint is only useful seen
        click.echo(f"note: backend {choice[0]}, {choice[1]}", err=True)
    if choice[0] != "mlx" and (fit or device or budget_gb):
        click.echo("note: the memory plan models MLX; --fit, --device and --budget-gb do "
                   "nothing on the torch backend", err=True)
    if choice[0] == "mlx":
        hide_torch_from_transformers()
        # The planner models MLX's allocator; the torch backend's memory is PyTorch's business.
        from ..memory.preflight import DoesNotFit, preflight

        try:
            recipe, memory = preflight(recipe, device=device, budget_gb=budget_gb, fit=fit,
                                       force=force, recipe_file=recipe_file,
                                       overrides=overrides,
                                       say=lambda m: click.echo(m, err=True))
        except DoesNotFit as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_DOES_NOT_FIT)
    return recipe, choice, memory


def _evaluate(recipe, run_root, backend: str, listeners=()) -> int:
    """eval.after_train: judge the gates on the best adapter; 4 when a gate fails."""
    import json
    from pathlib import Path

    from rich.console import Console

    from ..eval.after_train import evaluate_after_training
    from ..ui.evaltable import print_summary
    from .eval import EXIT_GATE_FAILED

    err = Console(stderr=True)
    summary = evaluate_after_training(recipe, run_root, backend,
                                      progress=lambda m: err.print(f"[dim]{m}[/]"),
                                      listeners=listeners)
    details = {n: json.loads((Path(run_root) / "eval" / f"{n}.json").read_text())
               for n in summary["suites"]}
    print_summary(summary, details, Console(), title=f"{recipe.name}: evaluation")
    return 0 if summary["passed"] else EXIT_GATE_FAILED
