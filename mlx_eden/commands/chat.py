from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(), required=False)
@click.option("--model", default=None, help="Base model folder or hub id (instead of RUN_DIR).")
@click.option("--adapter", type=click.Path(), default=None,
              help="Adapter folder [default with RUN_DIR: its best/, else adapter/].")
@click.option("--system", default=None,
              help="System prompt [default: the run's data.system_prompt].")
@click.option("--style", default="", help="A style name: its control tag (<STYLE_NAME>, as "
              "`data prepare` writes it) goes first in the system prompt.")
@click.option("--thinking/--no-thinking", default=None,
              help="Qwen3: enable_thinking on or off [default: the run's "
                   "data.chat_template_args, else off].")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "mlx", "torch"]), default="auto",
              show_default=True, help="auto: the backend the run trained on (mlx for --model).")
def chat(run_dir, model, adapter, system, style, thinking, max_tokens, backend):
    """Chat in the terminal with a run's adapter (or a model): streamed answers, the run's chat
    template and options, multi-turn history, /reset, /system TEXT, tokens/s."""
    from ..data.render import load_tokenizer
    from ..run.target import resolve_target
    from ..ui.chat import ChatSession

    target = resolve_target(run_dir, model, adapter)
    name = target.backend if backend == "auto" else backend
    tok = load_tokenizer(target.model_dir)
    args = dict(target.recipe.data.chat_template_args or {})
    if thinking is not None:
        args["enable_thinking"] = thinking
    stream = _load_stream(name, target, tok)
    click.echo(click.style(f"{target.label} · adapter {target.adapter or 'none'} · {name}",
                           dim=True))
    ChatSession(tok, stream, args, target.recipe.data.system_prompt if system is None
                else system, style, max_tokens).run()


def _load_stream(name: str, target, tok):
    """The backend's streaming generator; torch reads the adapter as PEFT (a run's peft/
    folder, else converted into a temporary one)."""
    from ..backends.base import choose_backend, hide_torch_from_transformers

    if name == "mlx":
        hide_torch_from_transformers()
        from ..backends.mlx.chat import load_stream

        return load_stream(target.model_dir, target.adapter, tok)
    choose_backend("torch")  # one line when the torch extra is missing
    from ..backends.torch.chat import load_stream

    if target.adapter is None or (target.adapter / "peft").is_dir():
        return load_stream(target.model_dir, target.adapter and target.adapter / "peft", tok)
    import tempfile

    from ..export.peft import export_peft

    with tempfile.TemporaryDirectory(prefix="eden-chat-peft-") as tmp:
        export_peft(target.adapter, tmp, str(target.model_dir))
        return load_stream(target.model_dir, tmp, tok)  # peft has read the files by now
