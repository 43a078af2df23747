from __future__ import annotations

import click

from . import overwrite_option


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", type=click.Path(),
              help="HTML file to write (default: RUN_DIR/report.html for one run, "
                   "./report.html when comparing several).")
@overwrite_option
def report(run_dirs, output, overwrite):
    """Write one self-contained HTML report of RUN_DIRS (curves overlaid when several) and print
    a summary table."""
    from ..safeio import check_target, has_signature
    from ..ui.report import default_output, make_report

    check_target(output or default_output(list(run_dirs)), command="report", is_dir=False,
                 overwrite=overwrite, own=has_signature(b'content="mlx-eden report"'),
                 inputs=[f"{d}/{f}" for d in run_dirs
                         for f in ("run.json", "metrics.jsonl", "memory.jsonl")])
    make_report(list(run_dirs), output)
