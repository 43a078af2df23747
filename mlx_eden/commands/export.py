from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from . import overwrite_option

QUANTS = ["f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k"]
verify_option = click.option("--verify", is_flag=True,
                             help="Load the result in its real consumer and compare with MLX.")


def report_verdict(verdict) -> None:
    """Print a verification (or several); a failed one makes the command exit 1 (the file stays
    written)."""
    verdicts = verdict if isinstance(verdict, list) else [verdict]
    for v in verdicts:
        for line in v.lines():
            click.echo(line)
    if not all(v.passed for v in verdicts):
        sys.exit(1)


def check_gguf_target(output, overwrite: bool, command: str, *inputs) -> None:
    """A GGUF we wrote carries our writer key in its header; anything else needs --overwrite."""
    from ..export.gguf import WRITER
    from ..safeio import check_target, has_signature

    check_target(output, command=command, is_dir=False, overwrite=overwrite, inputs=inputs,
                 own=has_signature(WRITER.encode()))


def trained_reference(model_dir: Path, reference: str | None, base: str | None,
                      adapter: str | None) -> tuple[str, tuple[Path, Path] | None]:
    """The reference `export gguf --verify` compares with, and (base, adapter) for `trained`:
    from --base/--adapter, else from the fused folder's provenance (eden_fuse.json)."""
    from ..errors import UserError
    from ..export.fuse import provenance
    from ..hub import resolve_model

    made_from = provenance(model_dir) or {}
    base, adapter = base or made_from.get("model"), adapter or made_from.get("adapter")
    reference = reference or ("trained" if adapter else "float")
    if reference != "trained":
        return reference, None
    if not (base and adapter):
        raise UserError("--reference trained needs the base and the adapter the model was "
                        "trained with", file=str(model_dir),
                        hint="pass --base MODEL --adapter DIR (a folder written by eden-mlx fuse "
                        "records them)")
    return reference, (Path(resolve_model(base)), Path(adapter))


@click.group()
def export():
    """Export a fused model or an adapter for llama.cpp, Ollama, PEFT and vLLM."""


@export.command("gguf")
@click.argument("model_dir")
@click.option("--output", "-o", required=True, type=click.Path(), help="GGUF file to write.")
@click.option("--quant", type=click.Choice(QUANTS), default="f16", show_default=True,
              help="Float types are written by gguf-py; the rest by llama.cpp's quantizer.")
@click.option("--allow-fallback", is_flag=True,
              help="Accept llama.cpp's fallback type for tensors whose rows do not fit the "
                   "quant's block size (listed in the output).")
@verify_option
@click.option("--reference", type=click.Choice(["trained", "fused", "float"]), default=None,
              help="With --verify, what llama.cpp is compared with: trained (the base as trained, "
                   "4-bit included, + adapter, quantization gap reported apart from the "
                   "file-reading check), fused (the fused folder), float (the file's own weights "
                   "in float32; needs 8 bytes per parameter). [default: trained when the "
                   "adapter is known, else float]")
@click.option("--base", default=None, help="With --reference trained: the base the adapter "
              "was trained on [default: from the fused folder's eden_fuse.json].")
@click.option("--adapter", default=None, type=click.Path(),
              help="With --reference trained: the adapter [default: from eden_fuse.json].")
@overwrite_option
def gguf(model_dir, output, quant, allow_fallback, verify, reference, base, adapter,
         overwrite):
    """Write MODEL_DIR (a float Qwen2/Qwen3 folder, e.g. from `eden-mlx fuse`, or a hub id)
    as GGUF."""
    from ..export.card import write_card
    from ..export.to_gguf import export_gguf
    from ..hub import resolve_model

    model_dir = resolve_model(model_dir)
    check_gguf_target(output, overwrite, "export gguf", model_dir)
    if verify:  # a bad --reference fails before the export, not after
        reference, trained = trained_reference(Path(model_dir), reference, base, adapter)
    report = export_gguf(model_dir, output, quant, allow_fallback=allow_fallback)
    write_card(output, model=model_dir, adapter=None, library="gguf", tags=["gguf", quant],
               what=f"A GGUF ({quant}) for llama.cpp (llama-cli -m, llama-server -m).")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    types = ", ".join(f"{n} {t}" for t, n in sorted(report.types.items()))
    click.echo(f"wrote {report.path} ({quant}: {report.tensors} tensors: {types})")
    if verify:
        from ..export.verify import verify_gguf

        report_verdict(verify_gguf(Path(output), Path(model_dir), quant, reference, trained))


@export.command("gguf-lora")
@click.argument("adapter_dir", type=click.Path())
@click.option("--model", "model", required=True,
              help="The base model folder (or hub id): float, or the MLX-quantized base a QLoRA "
                   "run trained on.")
@click.option("--output", "-o", required=True, type=click.Path(), help="GGUF file to write.")
@click.option("--base-gguf", type=click.Path(), default=None,
              help="With --verify: the base GGUF to apply it to (default: a temporary f32 one, "
                   "from a float --model only).")
@verify_option
@overwrite_option
def gguf_lora(adapter_dir, model, output, base_gguf, verify, overwrite):
    """Write ADAPTER_DIR as a llama.cpp LoRA adapter (llama-cli --lora FILE)."""
    from ..export.card import write_card
    from ..export.gguf_lora import export_gguf_lora
    from ..hub import resolve_model
    from ..safeio import published

    model_dir = resolve_model(model)
    check_gguf_target(output, overwrite, "export gguf-lora", model_dir, adapter_dir)
    adapter_dir = published(adapter_dir)
    info = export_gguf_lora(adapter_dir, model_dir, output)
    write_card(output, model=model, adapter=adapter_dir, library="gguf", tags=["gguf", "lora"],
               what="A llama.cpp LoRA adapter (llama-cli -m BASE.gguf --lora FILE).")
    click.echo(f"wrote {output} ({info['modules']} modules, r={info['rank']}, "
               f"alpha={info['alpha']:g})")
    if verify:
        from ..errors import UserError
        from ..export.files import read_config
        from ..export.to_gguf import export_gguf
        from ..export.verify import check_memory, verify_gguf_lora

        if not base_gguf and "quantization" in read_config(model_dir):
            raise UserError("--verify on a quantized base needs the base GGUF you deploy",
                            file=str(model_dir), hint="pass --base-gguf FILE (the file is written)")
        with tempfile.TemporaryDirectory(dir=Path(output).parent) as tmp:
            base = Path(base_gguf) if base_gguf else Path(tmp) / "base-f32.gguf"
            if not base_gguf:
                check_memory(model_dir, 0)  # before writing a float32 base for nothing
                export_gguf(model_dir, base, "f32")
            report_verdict(verify_gguf_lora(Path(output), base, model_dir, Path(adapter_dir)))


@export.command("peft")
@click.argument("adapter_dir", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder to write.")
@click.option("--model", "model", default=None,
              help="Base model (hub id or folder) recorded as base_model_name_or_path and used "
                   "by --verify [default: the adapter's own record].")
@verify_option
@overwrite_option
def peft(adapter_dir, output, model, verify, overwrite):
    """Write ADAPTER_DIR in PEFT format (peft.PeftModel, vLLM --lora-modules)."""
    from ..export.card import write_card
    from ..export.peft import export_peft
    from ..safeio import check_target, published

    check_target(output, command="export peft", overwrite=overwrite, inputs=(adapter_dir,))
    adapter_dir = published(adapter_dir)
    config = export_peft(adapter_dir, output, model)
    write_card(output, model=config["base_model_name_or_path"], adapter=adapter_dir,
               library="peft", tags=["peft", "lora"],
               what="A PEFT adapter (peft.PeftModel.from_pretrained, vLLM --lora-modules).")
    if config["use_dora"]:
        click.echo("warning: DoRA: peft.PeftModel loads it; vLLM serves LoRA only (fuse instead)",
                   err=True)
    click.echo(f"wrote {output} (r={config['r']}, lora_alpha={config['lora_alpha']:g}, "
               f"targets {', '.join(config['target_modules'])})")
    if verify:
        from ..export.verify import verify_peft
        from ..hub import resolve_model

        base = resolve_model(config["base_model_name_or_path"] or "")
        report_verdict(verify_peft(Path(output), base, Path(adapter_dir)))


@export.command("ollama")
@click.argument("gguf_file", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Modelfile to write.")
@click.option("--system", default=None,
              help="System message [default: the chat template's own default].")
@click.option("--template-args", default=None, metavar="YAML",
              help="The run's data.chat_template_args, e.g. '{enable_thinking: true}' "
              "[default: the same default as training].")
@verify_option
@overwrite_option
def ollama(gguf_file, output, system, template_args, verify, overwrite):
    """Write an Ollama Modelfile for GGUF_FILE (ChatML template, stop tokens)."""
    from ..export.card import write_card_from
    from ..export.ollama import SIGNATURE, export_ollama, parse_template_args
    from ..safeio import check_target, has_signature

    check_target(output, command="export ollama", is_dir=False, overwrite=overwrite,
                 own=has_signature(SIGNATURE.encode()), inputs=(gguf_file,))
    export_ollama(gguf_file, output, system, parse_template_args(template_args))
    write_card_from(output, gguf_file, tags=["ollama"],
                    what=f"An Ollama Modelfile for {Path(gguf_file).name} (ollama create).")
    click.echo(f"wrote {output} (ollama create NAME -f {output})")
    if verify:
        from ..export.verify import verify_ollama

        report_verdict(verify_ollama(Path(output), Path(gguf_file)))
