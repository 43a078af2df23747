"""One module per `eden-mlx` subcommand: parse options, call one library function, print."""

import click

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set train.learning_rate=1e-4 (repeatable).")
