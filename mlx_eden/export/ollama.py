"""`eden-mlx export ollama`: a Modelfile for a ChatML (Qwen) GGUF: the template in Ollama's Go
syntax, the default system message of the model's own chat template, and the stop tokens."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UserError
from ..safeio import atomic_file

# ChatML in Ollama's template language, the shape of Ollama's own qwen2 template (no tools):
# the system message comes from .System; the reply is opened after the last non-assistant turn.
TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

# The literal default system turn in a Qwen chat template ("\n" may be a real newline or the
# two characters of a Jinja escape).
DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.+?)<\|im_end\|>")


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


def modelfile_text(gguf_path: Path, modelfile: Path, system: str | None = None) -> str:
    template, stops = gguf_chat_facts(gguf_path)
    if "<|im_start|>" not in template:
        raise UserError("the GGUF's chat template is not ChatML", file=str(gguf_path),
                        hint="the Modelfile template is written for Qwen's ChatML")
    if system is None and (m := DEFAULT_SYSTEM.search(template)):
        system = m.group(1)
    source = os.path.relpath(Path(gguf_path).resolve(), Path(modelfile).resolve().parent)
    lines = [f"FROM {source if source.startswith('.') else './' + source}",
             f'TEMPLATE """{TEMPLATE}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines.append(SIGNATURE)  # last: Ollama reads FROM first; `check_target` looks for this
    return "\n".join(lines) + "\n"


def export_ollama(gguf_path: str | Path, output: str | Path, system: str | None = None) -> str:
    """Write the Modelfile at `output` (FROM is relative to it, as Ollama resolves it)."""
    gguf_path, output = Path(gguf_path), Path(output)
    if not gguf_path.is_file():
        raise UserError("GGUF file not found", file=str(gguf_path))
    text = modelfile_text(gguf_path, output, system)
    with atomic_file(output) as tmp:
        tmp.write_text(text)
    return text
