"""Raw records -> ChatML conversations (`[{"role", "content"}, ...]`), with the transforms:
role mapping, a system prompt per value of a field, a style field as a control prefix
(TERSE -> <STYLE_TERSE>) and retrieved context in the system message.

A record that cannot be read as a conversation raises `Malformed` naming the field; the
pipeline sends it to rejected.jsonl (or stops with --strict).
"""

from __future__ import annotations

from ..formats import detect_format
from ..prompting import style_tag
from .where import MissingField, lookup

ROLES = ("system", "user", "assistant")


class Malformed(ValueError):
    """A record that is not a conversation; the message names the field."""


def _text(value, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise Malformed(f"field {name!r} is a {type(value).__name__}, not text")
    return str(value)


def _get(raw: dict, fields: dict, name: str, default=None):
    """The value the `fields` mapping names for `name` (or the record's own key)."""
    path = fields.get(name, name)
    try:
        return lookup(raw, path)
    except MissingField:
        if default is not None:
            return default
        raise Malformed(f"field {path!r} is missing") from None


def _role(value, roles: dict) -> str:
    role = roles.get(str(value), str(value))
    if role not in ROLES:
        raise Malformed(f"unknown role {value!r} (map it with roles: {{{value}: assistant}})")
    return role


def _from_messages(msgs, roles: dict) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise Malformed("messages must be a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise Malformed(f"messages.{i} needs role and content")
        out.append({"role": _role(m["role"], roles), "content": _text(m["content"],
                                                                       f"messages.{i}.content")})
    return out


def _from_fields(raw: dict, fields: dict, roles: dict) -> list[dict]:
    """A record with one exchange: system/user/assistant, instruction/input/output,
    prompt/completion or text, by the names the `fields` mapping (or the record) has."""
    have = set(fields) | set(raw)
    if "messages" in have:
        return _from_messages(_get(raw, fields, "messages"), roles)
    if "instruction" in have or "output" in have:
        instr = _text(_get(raw, fields, "instruction"), "instruction")
        extra = _text(_get(raw, fields, "input", ""), "input")
        user = f"{instr}\n\n{extra}" if extra.strip() else instr
        pairs = [("user", user), ("assistant", _text(_get(raw, fields, "output"), "output"))]
    elif "prompt" in have or "completion" in have:
        pairs = [("user", _text(_get(raw, fields, "prompt"), "prompt")),
                 ("assistant", _text(_get(raw, fields, "completion"), "completion"))]
    elif "user" in have or "assistant" in have:
        pairs = [(r, _text(_get(raw, fields, r), r)) for r in ("user", "assistant")
                 if r in have]
    elif "text" in have:
        pairs = [("assistant", _text(_get(raw, fields, "text"), "text"))]
    else:
        fmt = detect_format(raw)
        raise Malformed(f"cannot tell the format from keys {sorted(raw)[:8]}" if fmt is None
                        else f"unsupported format {fmt}")
    if "system" in fields or "system" in raw:
        pairs.insert(0, ("system", _text(_get(raw, fields, "system"), "system")))
    return [{"role": r, "content": c} for r, c in pairs]


def _from_rows(rows: list[dict], fields: dict, roles: dict) -> list[dict]:
    return [{"role": _role(_get(row, fields, "role"), roles),
             "content": _text(_get(row, fields, "content"), fields.get("content", "content"))}
            for row in rows]


def _set_system(msgs: list[dict], text: str, where: str) -> list[dict]:
    """Put `text` into the system message: first (a prefix), last (appended) or as a new one."""
    if msgs and msgs[0]["role"] == "system":
        old = msgs[0]["content"]
        new = {"first": f"{text} {old}", "last": f"{old}\n\n{text}"}.get(where, old) if old \
            else text
        return [{"role": "system", "content": new}] + msgs[1:]
    return [{"role": "system", "content": text}] + msgs


def to_messages(raw: dict, rows: list[dict] | None, spec) -> list[dict]:
    """The conversation of one raw item under source `spec` (fields, roles, prompts)."""
    fields, roles = dict(spec.fields), dict(spec.roles)
    msgs = _from_rows(rows, fields, roles) if rows is not None else \
        _from_fields(raw, fields, roles)
    if spec.system_prompt_by:
        try:
            value = str(lookup(raw, spec.system_prompt_by))
        except MissingField:
            raise Malformed(f"field {spec.system_prompt_by!r} is missing") from None
        prompt = spec.system_prompts.get(value, spec.system_prompts.get("*"))
        if prompt is None:
            raise Malformed(f"no system prompt for {spec.system_prompt_by}={value!r} "
                            "(add it to system_prompts, or a '*' default)")
        if not (msgs and msgs[0]["role"] == "system" and msgs[0]["content"].strip()):
            msgs = _set_system([m for m in msgs if m["role"] != "system"] or msgs, prompt, "")
    if "style" in fields:
        style = _text(_get(raw, fields, "style", ""), "style").strip()
        if style:
            msgs = _set_system(msgs, style_tag(style), "first")
    if "context" in fields:
        context = _text(_get(raw, fields, "context", ""), "context").strip()
        if context:
            msgs = _set_system(msgs, f"Context:\n{context}", "last")
    return msgs
