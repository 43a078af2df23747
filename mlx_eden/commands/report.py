from __future__ import annotations

import click


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", type=click.Path(),
              help="HTML file to write (default: RUN_DIR/report.html for one run, "
                   "./report.html when comparing several).")
def report(run_dirs, output):
    """Write one self-contained HTML report of RUN_DIRS (curves overlaid when several) and print
    a summary table."""
    from ..ui.report import make_report

    make_report(list(run_dirs), output)
