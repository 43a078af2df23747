"""`eden-mlx export ollama`: a Modelfile for a ChatML (Qwen) GGUF: the template in Ollama's Go
syntax (ollama_templates.py), the default system message of the model's own chat template, and
the stop tokens."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.render import template_args
from ..errors import UserError
from ..safeio import atomic_file
from .ollama_templates import go_template


def gguf_chat_facts(gguf_path: Path) -> tuple[str, list[str]]:
    """(chat template, stop strings) read from the GGUF's own metadata."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields
    if "tokenizer.chat_template" not in fields:
        raise UserError("the GGUF has no chat template", file=str(gguf_path))
    template = str(fields["tokenizer.chat_template"].contents())
    tokens = fields["tokenizer.ggml.tokens"].contents()
    stops = ["<|im_end|>"]
    if "tokenizer.ggml.eos_token_id" in fields:
        eos = tokens[int(fields["tokenizer.ggml.eos_token_id"].contents())]
        if eos not in stops:
            stops.append(eos)
    if "<|endoftext|>" in tokens and "<|endoftext|>" not in stops:
        stops.append("<|endoftext|>")
    return template, stops

SIGNATURE = "# written by eden-mlx export ollama"


def render_jinja(template: str, messages: list[dict], **kw) -> str:
    """Render a Hugging Face chat template as transformers does (its own Jinja environment)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered = render_jinja_template([messages], chat_template=template, **kw)
    return rendered[0][0] if isinstance(rendered, tuple) else rendered[0]


def default_system(template: str, args: dict) -> str | None:
    """The system message the template writes when a conversation has none, found by rendering
    one (a regex over the Jinja source finds string fragments like `' + messages[0].content`)."""
    user = [{"role": "user", "content": "\ue000"}]
    text = render_jinja(template, user, **args)
    head = "<|im_start|>system\n"
    if not text.startswith(head) or "<|im_end|>" not in text:
        return None
    system = text[len(head):text.index("<|im_end|>")]
    same = render_jinja(template, [{"role": "system", "content": system}] + user, **args)
    return system if same == text else None


def modelfile_text(gguf_path: Path, modelfile: Path, system: str | None = None,
                   args: dict | None = None) -> str:
    """The Modelfile; `args` are data.chat_template_args (thinking default, etc.)."""
    template, stops = gguf_chat_facts(gguf_path)
    if "<|im_start|>" not in template:
        raise UserError("the GGUF's chat template is not ChatML", file=str(gguf_path),
                        hint="the Modelfile template is written for Qwen's ChatML")
    args = template_args(template, args)
    if system is None:
        system = default_system(template, args)
    source = os.path.relpath(Path(gguf_path).resolve(), Path(modelfile).resolve().parent)
    lines = [f"FROM {source if source.startswith('.') else './' + source}",
             f'TEMPLATE """{go_template(template, args)}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines.append(SIGNATURE)  # last: Ollama reads FROM first; `check_target` looks for this
    return "\n".join(lines) + "\n"


def parse_template_args(text: str | None) -> dict:
    """--template-args: a YAML mapping, as data.chat_template_args is written in a recipe."""
    import yaml

    value = yaml.safe_load(text) if text else {}
    if not isinstance(value, dict):
        raise UserError(f"--template-args must be a mapping, got {text!r}",
                        hint="e.g. --template-args '{enable_thinking: true}'")
    return value


def export_ollama(gguf_path: str | Path, output: str | Path, system: str | None = None,
                  args: dict | None = None) -> str:
    """Write the Modelfile at `output` (FROM is relative to it, as Ollama resolves it)."""
    gguf_path, output = Path(gguf_path), Path(output)
    if not gguf_path.is_file():
        raise UserError("GGUF file not found", file=str(gguf_path))
    text = modelfile_text(gguf_path, output, system, args)
    with atomic_file(output) as tmp:
        tmp.write_text(text)
    return text
