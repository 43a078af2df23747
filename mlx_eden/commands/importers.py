"""`eden-mlx import`: a module named importers because `import` is a Python keyword."""

from __future__ import annotations

from pathlib import Path

import click

from . import overwrite_option
from .export import report_verdict, verify_option


@click.group("import")
def import_():
    """Import adapters trained elsewhere."""


@import_.command("peft")
@click.argument("peft_dir", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Adapter folder to write.")
@click.option("--model", "model", default=None,
              help="Base model folder or hub id (places the layers; used by --verify) "
                   "[default: the PEFT config's base_model_name_or_path].")
@verify_option
@overwrite_option
def peft(peft_dir, output, model, verify, overwrite):
    """Convert a PEFT LoRA/DoRA adapter into an mlx-lm adapter folder (mlx_lm --adapter-path,
    eden-mlx fuse, adapter.init_from)."""
    from ..export.peft import import_peft
    from ..hub import resolve_model
    from ..safeio import check_target

    check_target(output, command="import peft", overwrite=overwrite, inputs=(peft_dir,))
    base = resolve_model(model) if model else None
    config = import_peft(peft_dir, output, base)
    click.echo(f"wrote {output} ({config['fine_tune_type']} r={config['lora_parameters']['rank']}"
               f", last {config['num_layers']} layers)")
    if verify:
        from ..export.verify import verify_peft

        base = base or resolve_model(config["model"] or "")
        report_verdict(verify_peft(Path(peft_dir), base, Path(output)))
