from __future__ import annotations

import click

from ..registry import EXPORT_QUANT_BITS
from . import POSITIVE, overwrite_option


@click.command()
@click.option("--model", "model", required=True, help="Base model folder or hub id.")
@click.option("--adapter", "adapter", type=click.Path(), default=None,
              help="Adapter folder (a run's adapter/ or best/); omit to only de-quantize/cast.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder to write.")
@click.option("--dtype", type=click.Choice(["bf16", "f16", "f32"]), default=None,
              help="Weight dtype of the output [default: the base's; bf16 for a quantized base].")
@click.option("--requantize", type=click.Choice([str(b) for b in EXPORT_QUANT_BITS]), default=None,
              help="Quantize the fused weights again (MLX affine; MLX-only output). Reports the "
                   "measured logit change.")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="64",
              show_default=True,
              help="Group size for --requantize.")
@click.option("--max-shard-gb", type=POSITIVE, default=5.0, show_default=True,
              help="Largest safetensors shard, in GiB.")
@overwrite_option
def fuse(model, adapter, output, dtype, requantize, group_size, max_shard_gb, overwrite):
    """Merge an adapter into de-quantized base weights and write a Hugging Face-layout folder
    (loads in mlx-lm and transformers; input for `eden-mlx export gguf`)."""
    from ..export.card import write_card
    from ..export.fuse import fuse as run_fuse
    from ..safeio import check_target, published

    check_target(output, command="fuse", overwrite=overwrite, inputs=(model, adapter))
    adapter = published(adapter) if adapter else None  # a publish cut by a kill: the old copy

    report = run_fuse(model, adapter, output, dtype=dtype,
                      requantize=int(requantize) if requantize else None,
                      group_size=int(group_size), max_shard_gb=max_shard_gb)
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    what = f"{report.adapter} adapter fused" if report.adapter else "no adapter"
    q = report.requantized
    # A requantized folder holds q-bit weights (scales and biases in report.dtype), not floats.
    stored = (f"{q['bits']}-bit, group {q['group_size']}, scales {report.dtype}" if q
              else report.dtype)
    write_card(output, model=model, adapter=adapter, library="transformers",
               tags=["mlx", "safetensors", "lora"], what="The base with the adapter merged: a "
               "Hugging Face-layout folder (mlx-lm, transformers; `eden-mlx export gguf` input).")
    click.echo(f"wrote {report.output} ({what}, {stored}, {len(report.files)} files, README.md)")
