"""Prompts a person writes rather than a data file (eval.samples, `chat`, `serve`): a style's
control tag, the system message as training saw it, and a conversation's token ids up to the
assistant's turn, rendered by the model's template with the recipe's template options."""

from __future__ import annotations

from ..errors import UserError
from .render import end_of_turn, template_args


def style_tag(style: str) -> str:
    """The control tag `data prepare` writes for a style field value (TERSE -> <STYLE_TERSE>)."""
    return f"<STYLE_{style.upper()}>"


def system_text(default: str, system: str | None = None, style: str = "") -> str:
    """The system message: `system` (else the recipe's `default`), with the style's tag first,
    placed as `data prepare` places it ("<STYLE_X> rest"). Empty when there is none."""
    base = default if system is None else system
    return " ".join(p for p in (style_tag(style) if style else "", base) if p)


def with_system(messages: list[dict], system: str) -> list[dict]:
    """`messages` with `system` as their system message (none when it is empty)."""
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": system}] if system else []) + rest


def conversation_ids(tok, messages: list[dict], chat_template_args: dict | None) -> list[int]:
    """Token ids of `messages` plus the assistant's generation prompt, rendered like training
    (the same template variables: Qwen3 gets enable_thinking=False unless the recipe says)."""
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                       **template_args(tok.chat_template, chat_template_args))
    except Exception as e:  # jinja raises many types; all mean "this template rejects it"
        raise UserError(f"chat template failed: {e}", key="data.chat_template_args") from None
    return tok(text, add_special_tokens=False)["input_ids"]


def stop_ids(tok) -> set[int]:
    """End of turn (<|im_end|> for ChatML) and EOS end an answer."""
    ids = {tok.convert_tokens_to_ids(end_of_turn(tok)), tok.eos_token_id}
    return {i for i in ids if i is not None}
