from __future__ import annotations

import click

from . import set_option


@click.group()
def data():
    """Inspect training data."""


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
    from ..data.render import load_tokenizer, render_records, template_args
    from ..hub import resolve_model
    from ..recipe import load_recipe
    from ..ui.datacheck import print_report

    recipe = load_recipe(recipe_file, overrides)
    tok = load_tokenizer(resolve_model(recipe.model.path, recipe.model.revision))
    console = Console()
    args = template_args(tok.chat_template, recipe.data.chat_template_args)
    for f in files:
        records = read_jsonl(f, recipe.data.format)
        samples, stats = render_records(records, tok, recipe.data)
        shown = samples[min(example, len(samples) - 1)] if samples else None
        print_report(console, f, records[0].format, stats, recipe.data.max_seq_length, tok, shown,
                     args)
