from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from . import set_option

EXIT_GATE_FAILED = 4  # 2 stays "bad input", 3 "does not fit" (plan/train)


@click.command("eval")
@click.argument("run_dir", type=click.Path(), required=False)
@click.option("--suite", "suites", multiple=True, metavar="NAME",
              help="Run only this suite (repeatable); default: all of eval.suites.")
@click.option("--adapter", default=None,
              help="best, adapter (the last) or an adapter folder. Default: best, else adapter "
              "(a run); none (--model).")
@click.option("--baseline", default=None, metavar="base|RUN_DIR|FILE.json",
              help="Compare with the base model (cached), another run, or a result file.")
@click.option("--model", default=None, help="Evaluate this model (not a run); needs --recipe.")
@click.option("--recipe", "recipe_file", type=click.Path(), default=None,
              help="Recipe whose eval.suites/gates to use (with a run: replaces the run's).")
@set_option
@click.option("--output", "-o", type=click.Path(), default=None,
              help="Where eval/ goes with --model (default: the recipe's output.dir).")
@click.option("--backend", type=click.Choice(["auto", "mlx", "torch"]), default=None,
              help="Override train.backend.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default=None,
              help="Classic mode: greedy-decode this split of RUN_DIR's data and score it.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Classic mode: the first N records only.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Classic mode: default eval.max_new_tokens.")
def eval_(run_dir, suites, adapter, baseline, model, recipe_file, overrides, output,
          backend, as_json, split, limit, max_new_tokens):
    """Run the recipe's evaluation suites and judge its gates (exit 4 when one fails).

    eden-mlx eval RUN_DIR [--suite NAME]... [--baseline base|RUN_DIR|FILE.json] [--json];
    eden-mlx eval --model M [--adapter DIR] --recipe R. Writes <dir>/eval/<suite>.json and
    summary.json. With --split (or a run without suites): the classic split evaluation."""
    from rich.console import Console

    from ..backends.base import choose_backend, hide_torch_from_transformers
    from ..errors import UserError
    from ..eval.runner import evaluate
    from ..ui.evaltable import print_summary

    recipe, chosen, out_dir = _resolve(run_dir, model, recipe_file, overrides, adapter, output)
    if run_dir and (split or not recipe.eval.suites):
        return _classic(run_dir, split or "test", adapter or "best", limit, max_new_tokens)
    if not recipe.eval.suites:
        raise UserError("the recipe declares no evaluation suites", key="eval.suites",
                        file=recipe_file, hint="add eval.suites (see `eden-mlx recipe keys`)")
    if choose_backend(backend or recipe.train.backend, recipe)[0] == "mlx":
        hide_torch_from_transformers()
    err = Console(stderr=True)
    summary = evaluate(recipe, adapter=chosen, out_dir=out_dir, only=suites, baseline=baseline,
                       backend=backend, progress=lambda m: err.print(f"[dim]{m}[/]"))
    if as_json:
        click.echo(json.dumps({k: summary[k] for k in ("suites", "baseline", "gates", "passed")}))
    else:
        details = {n: json.loads((Path(out_dir) / "eval" / f"{n}.json").read_text())
                   for n in summary["suites"]}
        print_summary(summary, details, Console(), title=f"{recipe.name}: evaluation")
        click.echo(f"wrote {Path(out_dir) / 'eval'}/summary.json")
    if not summary["passed"]:
        sys.exit(EXIT_GATE_FAILED)  # like train: click's ctx.exit is swallowed outside standalone


def _resolve(run_dir, model, recipe_file, overrides, adapter, output):
    """(recipe, adapter folder or None, output folder) for a run or for --model/--recipe."""
    from ..errors import UserError
    from ..eval.run import adapter_dir
    from ..recipe import load_recipe, recipe_from_dict
    from ..run.rundir import RunDir

    if run_dir:
        run = RunDir(run_dir)
        if not run.run_json.is_file():
            raise UserError("not a run directory (no run.json)", file=str(run_dir),
                            hint="pass a directory written by `eden-mlx train`, or --model")
        recipe = recipe_from_dict(run.read_run_json()["recipe"], file=str(run.run_json))
        if recipe_file:
            recipe = dataclasses.replace(recipe, eval=load_recipe(recipe_file, overrides).eval)
        which = adapter or ("best" if (run.best / "adapters.safetensors").is_file()
                            else "adapter")
        return recipe, adapter_dir(run, which), run.root
    if not recipe_file:
        raise UserError("give a run directory, or --model with --recipe",
                        hint="e.g. eden-mlx eval runs/tiny-demo, or eden-mlx eval --model M "
                        "--recipe R")
    recipe = load_recipe(recipe_file, overrides)
    if model:
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, path=model))
    if adapter and not (Path(adapter) / "adapters.safetensors").is_file():
        raise UserError("no adapter there", file=adapter, hint="an adapter folder "
                        "(adapters.safetensors + adapter_config.json)")
    return recipe, Path(adapter) if adapter else None, Path(output or recipe.output_dir)


def _classic(run_dir, split, adapter, limit, max_new_tokens):
    """`eden-mlx eval RUN_DIR --split test`: per-class P/R/F1 (eval.labels) or exact match."""
    from rich.console import Console
    from rich.table import Table

    from ..eval.run import evaluate_run

    report = evaluate_run(run_dir, split, adapter, limit, max_new_tokens)
    console = Console()
    if "per_class" in report:
        table = Table(title=f"{run_dir} ({split}, {report['n']} records)")
        for col in ("label", "precision", "recall", "f1", "support"):
            table.add_column(col, justify="left" if col == "label" else "right")
        for label, c in report["per_class"].items():
            table.add_row(label, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                          str(c["support"]))
        console.print(table)
        console.print(f"accuracy {report['accuracy']:.3f}  macro F1 {report['macro_f1']:.3f}  "
                      f"invalid outputs {report['invalid_predictions']}")
    else:
        console.print(f"exact match {report['exact_match']:.3f} on {report['n']} records")
    console.print(f"wrote {run_dir}/eval-{split}.json")
