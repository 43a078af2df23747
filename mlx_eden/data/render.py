"""Records → token ids + loss mask, through the tokenizer's own chat template.

The mask covers every assistant turn of a conversation, including its end-of-turn token
(mlx-lm masks only the last turn). In ChatML (Qwen) a turn is everything the template writes after
`<|im_start|>assistant\n` up to `<|im_end|>`: content, tool calls, and for Qwen3 the <think> block
(empty for plain answers; the reasoning itself with data.reasoning: keep). Tool results and other
roles are never trained. Other templates must insert assistant content verbatim (checked by a
second rendering with placeholders), else the record fails loudly.
"""

from __future__ import annotations

import re
import unicodedata
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


ASSISTANT = "<|im_start|>assistant"  # ChatML's assistant header (every Qwen template)
THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.S)


def load_tokenizer(model_path: str | Path):
    """The model's Hugging Face tokenizer (tokenizer.json + chat template); no torch needed."""
    from .hf_import import auto_tokenizer

    local = Path(model_path)
    if local.is_dir() and not any((local / n).is_file() for n in TOKENIZER_FILES):
        raise UserError("the model folder has no tokenizer files", file=str(local),
                        hint="copy tokenizer.json and tokenizer_config.json from the base model")
    try:  # AutoTokenizer, imported its folder scans cached (data/hf_import.py)
        return auto_tokenizer().from_pretrained(str(model_path))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer: {str(e).splitlines()[0]}", file=str(model_path),
                        hint="the model folder needs tokenizer.json and tokenizer_config.json") from None


def end_of_turn(tok) -> str:
    """The token that closes an assistant turn: <|im_end|> in Qwen's ChatML, else EOS."""
    return "<|im_end|>" if _chatml(tok) else tok.eos_token


def _chatml(tok) -> bool:
    # The added-token table, not get_vocab(): that builds a 151k-entry dict per call for Qwen.
    return "<|im_end|>" in tok.get_added_vocab() and "<|im_start|>" in tok.get_added_vocab()


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
    not_nfc: list[str] = field(default_factory=list)  # where text is not NFC (see data check)
    reasoning: int = 0  # records whose reasoning is kept and trained


def template_args(chat_template, args: dict | None) -> dict:
    """The variables every chat rendering passes to `chat_template`: data.chat_template_args, plus
    enable_thinking=False when the template reads it (Qwen3) and the recipe does not say: Qwen3's
    template gives a trained answer an empty <think></think> block, which is what it renders for
    non-thinking chat, so training, eval and the exported Modelfile all default to that."""
    out = dict(args or {})
    if isinstance(chat_template, str) and "enable_thinking" in chat_template:
        out.setdefault("enable_thinking", False)
    return out


def strip_reasoning(text: str) -> str:
    """`text` without a leading <think>...</think> block (and the blank lines after it)."""
    return THINK.sub("", text, count=1)


def has_reasoning(record: Record) -> bool:
    """Whether a chat record has an assistant turn with a <think> block or reasoning_content."""
    return record.format == "chat" and any(
        m["role"] == "assistant" and (THINK.match(m["content"]) or m.get("reasoning_content"))
        for m in record.fields["messages"])


def _alpaca_user(f: dict) -> str:
    return f["instruction"] + (f"\n\n{f['input']}" if f["input"] else "")


def chat_messages(record: Record, spec) -> tuple[list[dict], list | None]:
    """A record's conversation as the template sees it (system prompt added, reasoning policy
    applied) and its tools."""
    f = record.fields
    if record.format == "chat":
        messages = f["messages"]
    elif record.format == "alpaca":
        messages = [{"role": "user", "content": _alpaca_user(f)},
                    {"role": "assistant", "content": f["output"]}]
    else:
        messages = [{"role": "user", "content": f["prompt"]},
                    {"role": "assistant", "content": f["completion"]}]
    messages = with_style_token(messages, f.get("style"), spec.style_tokens, record)
    if spec.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": spec.system_prompt}] + messages
    if spec.reasoning == "strip":
        messages = [{**{k: v for k, v in m.items() if k != "reasoning_content"},
                     "content": strip_reasoning(m["content"])} if m["role"] == "assistant"
                    else m for m in messages]
    return messages, f.get("tools")


def with_style_token(messages: list[dict], style, tokens: dict, record: Record) -> list[dict]:
    """The messages with the style's control token in front of the last user turn (as the style
    eval suite places a prefix with place: user)."""
    if style is None or not tokens:
        return messages
    if style not in tokens:
        raise UserError(f"style {style!r} has no token in data.style_tokens", file=record.file,
                        line=record.line, hint=f"use one of {', '.join(sorted(tokens))} or map it")
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last is None:
        return messages
    messages = [dict(m) for m in messages]
    messages[last]["content"] = f"{tokens[style]} {messages[last]['content']}"
    return messages


def render_chat(tok, messages, tools, spec, record: Record, **kw) -> str:
    """apply_chat_template with the record's tools and the recipe's template variables."""
    try:
        return tok.apply_chat_template(messages, tools=tools, tokenize=False,
                                       **template_args(tok.chat_template,
                                                       spec.chat_template_args), **kw)
    except Exception as e:  # jinja raises many types; all mean "this template rejects the record"
        raise UserError(f"chat template failed: {e}", file=record.file, line=record.line) from None


def _turn_spans(full: str, n: int, eot: str, record: Record) -> list[tuple[int, int]]:
    """ChatML: each assistant turn is trained from just after its `<|im_start|>assistant` line to
    its end-of-turn token, whatever the template put there: Qwen3's <think> block, reasoning,
    tool calls, content it trimmed. Tool results are user-side turns, so never trained."""
    spans, pos = [], 0
    for _ in range(n):
        at = full.find(ASSISTANT, pos)
        if at < 0:
            break
        start = at + len(ASSISTANT) + full.startswith("\n", at + len(ASSISTANT))
        end = full.find(eot, start)
        pos = len(full) if end < 0 else end + len(eot)
        spans.append((start, pos))
    if len(spans) != n or full.find(ASSISTANT, pos) >= 0:
        raise UserError(f"the template rendered {full.count(ASSISTANT)} assistant turns for {n} "
                        "assistant messages, so the trained tokens cannot be located",
                        file=record.file, line=record.line,
                        hint=f"remove the literal {ASSISTANT} from message contents")
    return spans


def _marked_spans(tok, messages, tools, spec, full: str, record: Record):
    """Non-ChatML templates: locate assistant content by rendering once with placeholders; the
    template must insert assistant content verbatim."""
    marks = [f"\ue000{i}\ue001" for i in range(len(messages))]
    skeleton = render_chat(tok, [dict(m, content=marks[i]) if m["role"] == "assistant" else m
                                 for i, m in enumerate(messages)], tools, spec, record)
    text, spans, pos = "", [], 0
    for i, m in enumerate(messages):
        at = skeleton.find(marks[i], pos) if m["role"] == "assistant" else -1
        if at >= 0:
            text += skeleton[pos:at]
            spans.append((len(text), len(text) + len(m["content"])))
            text += m["content"]
            pos = at + len(marks[i])
    if text + skeleton[pos:] != full:
        raise UserError("the chat template rewrites assistant content, so the trained tokens "
                        "cannot be located", file=record.file, line=record.line,
                        hint="use a template that inserts assistant content verbatim")
    eot = end_of_turn(tok)
    return [(s, e + len(eot)) if full.startswith(eot, e) else (s, e) for s, e in spans]


def _chat_text(tok, record: Record, spec):
    """Render a conversation; return (text, [(start, end) char spans to train])."""
    messages, tools = chat_messages(record, spec)
    full = render_chat(tok, messages, tools, spec, record)
    n = sum(m["role"] == "assistant" for m in messages)
    if _chatml(tok):
        return full, _turn_spans(full, n, end_of_turn(tok), record)
    return full, _marked_spans(tok, messages, tools, spec, full, record)


def record_text(record: Record, tok, spec):
    """The training text of a record and the character spans whose tokens are trained."""
    f, eos, template, mask_prompt = record.fields, tok.eos_token, spec.template, spec.mask_prompt
    if record.format == "text":
        text = f["text"] + eos
        return text, [(0, len(text))]
    if record.format == "alpaca" and template == "alpaca":
        prompt = (ALPACA_WITH_INPUT if f["input"] else ALPACA_NO_INPUT).format(**f)
        return _masked(prompt, f["output"] + eos, mask_prompt)
    if template == "none" and record.format == "completions":
        return _masked(f["prompt"], f["completion"] + eos, mask_prompt)
    if template == "none" and record.format == "alpaca":
        return _masked(_alpaca_user(f), f["output"] + eos, mask_prompt)
    text, spans = _chat_text(tok, record, spec)
    return text, spans if mask_prompt else [(0, len(text))]


def _masked(prompt: str, answer: str, mask_prompt: bool):
    text = prompt + answer
    return text, [(len(prompt), len(text))] if mask_prompt else [(0, len(text))]


def tokenize_text(tok, text: str, spans) -> Sample:
    """Token ids of `text` and a mask of the trained ones. The text is tokenized in pieces cut at
    the span edges, so a prompt gets the same ids whether or not its answer follows: an answer
    starting with "\n" would otherwise merge with the prompt's last newline into one token that
    eval and inference, which send the prompt alone, never produce."""
    pieces, pos = [], 0
    for s, e in sorted(spans):
        pieces += [(text[pos:s], False), (text[s:e], True)]
        pos = e
    pieces = [(p, t) for p, t in pieces + [(text[pos:], False)] if p]
    enc = tok([p for p, _ in pieces], add_special_tokens=False)["input_ids"] if pieces else []
    ids = np.asarray([i for piece in enc for i in piece], dtype=np.int32)
    mask = np.asarray([t for (_, t), piece in zip(pieces, enc, strict=True) for _ in piece], bool)
    return Sample(ids, mask)


def render_records(records: list[Record], tok, spec) -> tuple[list[Sample], RenderStats]:
    """Tokenize records per the recipe's DataSpec, applying the truncation policy."""
    samples, stats = [], RenderStats()
    for r in records:
        text, spans = record_text(r, tok, spec)
        if not unicodedata.is_normalized("NFC", text):
            stats.not_nfc.append(r.where)
        stats.reasoning += spec.reasoning == "keep" and has_reasoning(r)
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
    """What a model is asked at evaluation and the answer it should give: the record rendered up
    to its last assistant turn, with the generation prompt, by the same template, tools, template
    variables and reasoning policy as training (so its ids are a prefix of the training ids); the
    answer is that turn's content without its <think> block."""
    f = record.fields
    if record.format == "text":
        raise UserError("text records have no prompt/answer to evaluate", file=record.file,
                        line=record.line, hint="evaluate chat, alpaca or completions data")
    if record.format == "alpaca" and spec.template == "alpaca":
        prompt = (ALPACA_WITH_INPUT if f["input"] else ALPACA_NO_INPUT).format(**f)
        return tok(prompt, add_special_tokens=False)["input_ids"], f["output"]
    if record.format == "completions" and spec.template == "none":
        return tok(f["prompt"], add_special_tokens=False)["input_ids"], f["completion"]
    if record.format == "alpaca" and spec.template == "none":  # as record_text renders it
        return tok(_alpaca_user(f), add_special_tokens=False)["input_ids"], f["output"]
    messages, tools = chat_messages(record, spec)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    text = render_chat(tok, messages[:last], tools, spec, record, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"], strip_reasoning(
        messages[last]["content"])
