from __future__ import annotations

import click

TORCH = ("serve runs on MLX (mlx-lm's server); for a torch/x86 production server use vLLM "
         "(vllm serve BASE --enable-lora --lora-modules NAME=PEFT_DIR, after `eden-mlx export "
         "peft`) or llama.cpp (llama-server -m base.gguf --lora adapter.gguf, after `eden-mlx "
         "export gguf-lora`)")


@click.command()
@click.argument("run_dir", type=click.Path(), required=False)
@click.option("--model", default=None, help="Base model folder or hub id (instead of RUN_DIR).")
@click.option("--adapter", type=click.Path(), default=None,
              help="Adapter folder [default with RUN_DIR: its best/, else adapter/].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (mlx-lm's server has only basic security: keep it "
                   "on loopback or behind a proxy).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True,
              help="Default max_tokens of a request that does not say.")
@click.option("--backend", type=click.Choice(["mlx", "torch"]), default="mlx",
              show_default=True, help="torch is refused with the production servers to use.")
def serve(run_dir, model, adapter, host, port, max_tokens, backend):
    """An OpenAI-compatible HTTP API (/v1/chat/completions with streaming, /v1/models) for a
    run's adapter or a model: mlx-lm's server, with the run's chat template options."""
    from ..backends.base import hide_torch_from_transformers
    from ..data.render import load_tokenizer, template_args
    from ..errors import UserError
    from ..run.target import check_servable, resolve_target

    if backend == "torch":
        raise UserError(TORCH, key="--backend")
    target = resolve_target(run_dir, model, adapter)
    check_servable(target)
    args = template_args(load_tokenizer(target.model_dir).chat_template,
                         target.recipe.data.chat_template_args)
    hide_torch_from_transformers()
    from ..backends.mlx.serve import serve as run_server

    click.echo(f"serving {target.label} as model {target.name!r} (adapter "
               f"{target.adapter or 'none'}) on http://{host}:{port}/v1 · template args "
               f"{args or '{}'} · Ctrl-C stops", err=True)
    run_server(target.name, target.model_dir, target.adapter, host, port, args, max_tokens)
