"""One module per `eden-mlx` subcommand: parse options, call one library function, print."""

import math

import click


class PositiveFloat(click.ParamType):
    """A finite number > 0 (click's FloatRange lets nan through: every comparison is False)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} must be a positive finite number", param, ctx)
        return number


POSITIVE = PositiveFloat()

overwrite_option = click.option(
    "--overwrite", is_flag=True,
    help="Replace the output even if it is not this command's own earlier output (never the "
         "input).")

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set train.learning_rate=1e-4 (repeatable).")
