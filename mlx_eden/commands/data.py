from __future__ import annotations

import click

from . import overwrite_option, set_option


@click.group()
def data():
    """Inspect training data; prepare it from raw logs and databases."""


@data.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--recipe", "recipe_file", required=True, type=click.Path(),
              help="Recipe whose model, template and limits to apply.")
@set_option
@click.option("--example", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which record to show rendered (0-based).")
def check(files, recipe_file, overrides, example):
    """Counts, token-length percentiles, truncation, and a rendered example with the trained
    tokens highlighted, for each JSONL FILE."""
    from rich.console import Console

    from ..data.formats import read_jsonl
    from ..data.render import render_records, template_args
    from ..hub import resolve_model
    from ..recipe import load_recipe
    from ..tokens import recipe_tokenizer
    from ..ui.datacheck import print_report

    recipe = load_recipe(recipe_file, overrides)
    tok = recipe_tokenizer(recipe, resolve_model(recipe.model.path, recipe.model.revision))
    console = Console()
    args = template_args(tok.chat_template, recipe.data.chat_template_args)
    for f in files:
        records = read_jsonl(f, recipe.data.format)
        samples, stats = render_records(records, tok, recipe.data)
        shown = samples[min(example, len(samples) - 1)] if samples else None
        print_report(console, f, records[0].format, stats, recipe.data.max_seq_length, tok, shown,
                     args)


@data.command("prepare")
@click.argument("recipe_file", metavar="PREP.yaml", type=click.Path())
@click.option("--output", type=click.Path(), default=None,
              help="Output folder (default: the recipe's output).")
@set_option
@click.option("--dry-run", is_flag=True, help="Run every step and show the funnel; write nothing.")
@click.option("--strict", is_flag=True, help="A malformed record is an error (exit 2) instead "
              "of a line in rejected.jsonl.")
@overwrite_option
def prepare(recipe_file, output, overrides, dry_run, strict, overwrite):
    """Raw logs and databases (JSONL, CSV, SQLite) -> filtered, deduplicated, mixed and split
    train/valid/test.jsonl, with rejected.jsonl and metadata.json, per a prepare recipe."""
    from pathlib import Path

    from rich.console import Console

    from ..data.prepare.pipeline import run
    from ..data.prepare.spec import load_prepare
    from ..ui.prepare import print_summary, progress_bar

    recipe = load_prepare(recipe_file, overrides)
    console = Console(stderr=True)
    with progress_bar(console) as update:
        result = run(recipe, Path(output or recipe.output_dir), strict=strict, dry_run=dry_run,
                     overwrite=overwrite, progress=update)
    print_summary(Console(), result.metadata, result.warnings, result.output)


@data.command("keys")
def keys():
    """List every prepare-recipe key with its default and help."""
    from ..data.prepare.spec import prepare_keys

    for path, help_text, default, allowed in prepare_keys():
        click.echo(f"{path} = {default!r}  [{allowed}]\n    {help_text}")
