from __future__ import annotations

import click

from ..errors import UserError, UserErrors
from ..recipe import field_help, load_recipe, recipe_to_yaml
from . import set_option


@click.group()
def recipe():
    """Show or check recipes."""


@recipe.command("show")
@click.argument("file", type=click.Path())
@set_option
def show(file, overrides):
    """Print the resolved recipe (defaults filled in, overrides applied)."""
    click.echo(recipe_to_yaml(load_recipe(file, overrides)), nl=False)


@recipe.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@set_option
def check(files, overrides):
    """Validate recipes; every problem of every file is reported."""
    problems: list[UserError] = []
    for f in files:
        try:
            load_recipe(f, overrides)
            click.echo(f"ok  {f}")
        except UserErrors as e:
            problems += e.errors
        except UserError as e:
            problems.append(e)
    if problems:
        raise UserErrors(problems)


@recipe.command("keys")
def keys():
    """List every recipe key with its default, allowed values and help."""
    click.echo("extends = (none)  [a path, relative to this file]\n    A parent recipe: this "
               "file's keys override the parent's, key by key (lists are replaced; a parent "
               "may extend another).")
    for path, help_text, default, allowed in field_help():
        click.echo(f"{path} = {default!r}  [{allowed}]\n    {help_text}")
