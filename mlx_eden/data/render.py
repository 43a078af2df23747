"""Records → token ids + loss mask, through the tokenizer's own chat template.

The mask covers every assistant turn of a conversation, including its end-of-turn token
(mlx-lm masks only the last turn). Assistant spans are located by rendering the template once with
placeholders and once with the real text, and the two must agree; a template that rewrites
assistant content therefore fails loudly instead of training on the wrong tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .formats import Record

# One of these makes a folder loadable by AutoTokenizer (fast, BPE files, sentencepiece).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def load_tokenizer(model_path: str | Path):
    """The model's Hugging Face tokenizer (tokenizer.json + chat template); no torch needed."""
    from transformers import AutoTokenizer

    local = Path(model_path)
    if local.is_dir() and not any((local / n).is_file() for n in TOKENIZER_FILES):
        raise UserError("the model folder has no tokenizer files", file=str(local),
                        hint="copy tokenizer.json and tokenizer_config.json from the base model")
    try:
        return AutoTokenizer.from_pretrained(str(model_path))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer: {str(e).splitlines()[0]}", file=str(model_path),
                        hint="the model folder needs tokenizer.json and tokenizer_config.json") from None


def end_of_turn(tok) -> str:
    """The token that closes an assistant turn: <|im_end|> in Qwen's ChatML, else EOS."""
    return "<|im_end|>" if "<|im_end|>" in tok.get_vocab() else tok.eos_token


@dataclass
class Sample:
    """One tokenized example. mask[j] is True when token j is a trained target."""

    ids: np.ndarray  # (n,) int32
    mask: np.ndarray  # (n,) bool
    where: str = ""

    @property
    def trained(self) -> int:
        return int(self.mask[1:].sum())


@dataclass
class RenderStats:
    samples: int = 0
    truncated: int = 0
    dropped: int = 0
    lengths: list[int] = field(default_factory=list)
    trained_tokens: int = 0


def _chat_text(tok, messages: list[dict], system_prompt: str | None, record: Record):
    """Render a conversation; return (text, [(start, end) char spans to train])."""
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}] + messages
    try:
        full = tok.apply_chat_template(messages, tokenize=False)
        marks = [f"\ue000{i}\ue001" for i in range(len(messages))]
        placeheld = [dict(m, content=marks[i]) if m["role"] == "assistant" else m
                     for i, m in enumerate(messages)]
        skeleton = tok.apply_chat_template(placeheld, tokenize=False)
    except Exception as e:  # jinja raises many types; all mean "this template rejects the record"
        raise UserError(f"chat template failed: {e}", file=record.file, line=record.line) from None
    text, spans, pos = "", [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        at = skeleton.find(marks[i], pos)
        if at < 0:
            break
        text += skeleton[pos:at]
        spans.append((len(text), len(text) + len(m["content"])))
        text += m["content"]
        pos = at + len(marks[i])
    text += skeleton[pos:]
    if text != full:
        raise UserError("the chat template rewrites assistant content, so the trained tokens "
                        "cannot be located", file=record.file, line=record.line,
                        hint="use a template that inserts assistant content verbatim")
    eot = end_of_turn(tok)
    spans = [(s, e + len(eot)) if full.startswith(eot, e) else (s, e) for s, e in spans]
    return full, spans


def record_text(record: Record, tok, template: str, mask_prompt: bool, system_prompt=None):
    """The training text of a record and the character spans whose tokens are trained."""
    f, eos = record.fields, tok.eos_token
    if record.format == "text":
        text = f["text"] + eos
        return text, [(0, len(text))]
    if record.format == "chat":
        messages = f["messages"]
    elif record.format == "alpaca":
        user = f["instruction"] + (f"\n\n{f['input']}" if f["input"] else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": f["output"]}]
        if template == "alpaca":
            prompt = (ALPACA_WITH_INPUT if f["input"] else ALPACA_NO_INPUT).format(**f)
            return _masked(prompt, f["output"] + eos, mask_prompt)
    else:  # completions
        messages = [{"role": "user", "content": f["prompt"]},
                    {"role": "assistant", "content": f["completion"]}]
    if template == "none" and record.format != "chat":
        prompt, answer = messages[0]["content"], messages[1]["content"] + eos
        return _masked(prompt, answer, mask_prompt)
    text, spans = _chat_text(tok, messages, system_prompt, record)
    return text, spans if mask_prompt else [(0, len(text))]


def _masked(prompt: str, answer: str, mask_prompt: bool):
    text = prompt + answer
    return text, [(len(prompt), len(text))] if mask_prompt else [(0, len(text))]


def tokenize_text(tok, text: str, spans) -> Sample:
    """Token ids of `text` and a mask of the tokens that overlap a trained span."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(len(ids), dtype=bool)
    for s, e in spans:
        mask |= (offsets[:, 0] < e) & (offsets[:, 1] > s)
    return Sample(ids, mask)


def render_records(records: list[Record], tok, spec) -> tuple[list[Sample], RenderStats]:
    """Tokenize records per the recipe's DataSpec, applying the truncation policy."""
    samples, stats = [], RenderStats()
    for r in records:
        text, spans = record_text(r, tok, spec.template, spec.mask_prompt, spec.system_prompt)
        s = tokenize_text(tok, text, spans)
        s.where = r.where
        stats.lengths.append(len(s.ids))
        if len(s.ids) > spec.max_seq_length:
            if spec.truncation == "drop":
                stats.dropped += 1
                continue
            s = Sample(s.ids[: spec.max_seq_length], s.mask[: spec.max_seq_length], s.where)
            stats.truncated += 1
        if s.trained == 0:  # nothing left to learn from (e.g. truncated inside the prompt)
            stats.dropped += 1
            continue
        samples.append(s)
        stats.trained_tokens += s.trained
    stats.samples = len(samples)
    return samples, stats


def prompt_and_reference(record: Record, tok, spec) -> tuple[list[int], str]:
    """What a model is asked at evaluation (the record rendered up to its final answer, with the
    generation prompt) and the answer it should give."""
    f = record.fields
    if record.format == "text":
        raise UserError("text records have no prompt/answer to evaluate", file=record.file,
                        line=record.line, hint="evaluate chat, alpaca or completions data")
    if record.format == "chat":
        last = max(i for i, m in enumerate(f["messages"]) if m["role"] == "assistant")
        messages, answer = f["messages"][:last], f["messages"][last]["content"]
    elif record.format == "alpaca":
        if spec.template == "alpaca":
            prompt = (ALPACA_WITH_INPUT if f["input"] else ALPACA_NO_INPUT).format(**f)
            return tok(prompt, add_special_tokens=False)["input_ids"], f["output"]
        user = f["instruction"] + (f"\n\n{f['input']}" if f["input"] else "")
        messages, answer = [{"role": "user", "content": user}], f["output"]
    else:
        if spec.template == "none":
            return tok(f["prompt"], add_special_tokens=False)["input_ids"], f["completion"]
        messages, answer = [{"role": "user", "content": f["prompt"]}], f["completion"]
    if spec.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": spec.system_prompt}] + messages
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"], answer
