from __future__ import annotations

import click

from ..registry import EXPORT_QUANT_BITS
from . import overwrite_option


@click.command()
@click.argument("out_dir", type=click.Path())
@click.option("--arch", type=click.Choice(["qwen2", "qwen3"]), default="qwen2", show_default=True)
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--layers", type=int, default=2, show_default=True)
@click.option("--heads", type=int, default=4, show_default=True)
@click.option("--kv-heads", type=int, default=2, show_default=True)
@click.option("--intermediate", type=int, default=512, show_default=True)
@click.option("--vocab", type=int, default=None,
              help="Embedding rows [default: 512; with --tokenizer, Qwen's 151936].")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(), default=None,
              help="Copy this Hugging Face tokenizer folder (and its chat template) instead of "
              "training a small BPE.")
@click.option("--spare", type=int, default=0, show_default=True,
              help="Embedding rows left after the trained tokenizer's ids (like Qwen's spare "
              "rows), for new control tokens (recipe tokens.add).")
@click.option("--tied/--untied", default=True, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quantize", type=click.Choice([str(b) for b in EXPORT_QUANT_BITS]), default=None,
              help="Also quantize (MLX affine, group 64) for QLoRA tests.")
@overwrite_option
def tiny(out_dir, arch, hidden, layers, heads, kv_heads, intermediate, vocab, tokenizer_dir,
         spare, tied, seed, quantize, overwrite):
    """Build a tiny Qwen2/Qwen3 model in OUT_DIR (Hugging Face layout; no network)."""
    from ..safeio import check_target
    from ..tiny import TinySpec, padded_vocab, tokenizer_size, write_quantized, write_tiny

    check_target(out_dir, command="tiny", overwrite=overwrite,
                 inputs=(tokenizer_dir,) if tokenizer_dir else ())

    if vocab is None:
        vocab = padded_vocab(tokenizer_size(tokenizer_dir)) if tokenizer_dir else 512
    spec = TinySpec(arch=arch, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                    intermediate=intermediate, vocab=vocab, tied=tied, seed=seed, spare=spare,
                    tokenizer=tokenizer_dir)
    if quantize:
        write_quantized(out_dir, spec, bits=int(quantize), group_size=64)
    else:
        write_tiny(out_dir, spec)
    n = tokenizer_size(out_dir)
    spare = f"; rows {n}..{vocab - 1} are spare (never produced)" if n < vocab else ""
    click.echo(f"wrote {out_dir} (tokenizer {n} ids, embedding {vocab} rows{spare})")
