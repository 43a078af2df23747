"""Read JSONL records in the four supported formats, keeping file and line for every record.

chat         {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}, ...],
              "tools": [...]}  (optional: function schemas the chat template renders)
             assistant messages may carry "tool_calls" (content may then be empty or null);
             role "tool" messages carry a tool's result (rendered, never trained)
alpaca       {"instruction": "...", "input": "...", "output": "..."}
completions  {"prompt": "...", "completion": "..."}
text         {"text": "..."}
dpo          {"prompt" | "messages": ..., "chosen": answer, "rejected": answer}   (preference)
kto          {"prompt" | "messages": ..., "completion": answer, "label": true|false}
             an answer is a string or an assistant message {"role": "assistant", "content": ...}

Any problem names the file and line and says what to do; nothing is silently skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

FORMATS = ("dpo", "kto", "chat", "alpaca", "completions", "text")  # detection order
PREFERENCE = ("dpo", "kto")
ROLES = ("system", "user", "assistant", "tool")
# Message keys passed through to the chat template besides role and content (OpenAI/HF names).
EXTRA_KEYS = {"assistant": ("tool_calls", "reasoning_content"), "tool": ("name", "tool_call_id")}
_KEYS = {"chat": {"messages"}, "alpaca": {"instruction", "output"},
         "completions": {"prompt", "completion"}, "text": {"text"},
         "dpo": {"chosen", "rejected"}, "kto": {"completion", "label"}}


@dataclass(frozen=True)
class Record:
    """One training example, normalised, with where it came from."""

    format: str
    fields: dict
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def detect_format(obj: dict) -> str | None:
    for fmt in FORMATS:
        if _KEYS[fmt] <= obj.keys():
            return fmt
    return None


def _check(fmt: str, obj: dict, file: str, line: int) -> dict:
    def fail(msg: str, hint: str) -> UserError:
        return UserError(msg, file=file, line=line, hint=hint)

    missing = _KEYS[fmt] - obj.keys()
    if missing:
        raise fail(f"{fmt} record is missing {', '.join(sorted(missing))}",
                   f"every line of a {fmt} file needs {', '.join(sorted(_KEYS[fmt]))}")
    if fmt in PREFERENCE:
        return _check_preference(fmt, obj, fail)
    if fmt == "chat":
        return _check_chat(obj, fail)
    out = {}
    for k in _KEYS[fmt] | ({"input"} if fmt == "alpaca" else set()):
        v = obj.get(k, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise fail(f"{k} must be a string, got {type(v).__name__}", "quote the value")
        out[k] = v
    return out


def _with_style(fields: dict, obj: dict, file: str, line: int) -> dict:
    """Keep a record's `style` (mapped to a control token by data.style_tokens)."""
    if "style" not in obj:
        return fields
    if not isinstance(obj["style"], str):
        raise UserError("style must be a string", file=file, line=line, hint='e.g. "TERSE"')
    return {**fields, "style": obj["style"]}


def _check_message(i: int, m, fail) -> dict:
    if not isinstance(m, dict) or "role" not in m:
        raise fail(f"messages[{i}] needs role and content", 'e.g. {"role": "user", "content": "Hi"}')
    if m["role"] not in ROLES:
        raise fail(f"messages[{i}] has unknown role {m['role']!r}", f"use one of {', '.join(ROLES)}")
    calls = m.get("tool_calls") if m["role"] == "assistant" else None
    if calls is not None and (not isinstance(calls, list) or
                              not all(isinstance(c, dict) for c in calls)):
        raise fail(f"messages[{i}].tool_calls must be a list of objects",
                   'e.g. [{"type": "function", "function": {"name": "f", "arguments": {}}}]')
    content = m.get("content")
    if content is None and calls:  # OpenAI logs write null content next to tool calls
        content = ""
    if "content" not in m and not calls:
        raise fail(f"messages[{i}] needs role and content", 'e.g. {"role": "user", "content": "Hi"}')
    if not isinstance(content, str):
        raise fail(f"messages[{i}].content must be a string", "flatten multi-part content")
    out = {"role": m["role"], "content": content}
    out.update({k: m[k] for k in EXTRA_KEYS.get(m["role"], ()) if m.get(k) is not None})
    return out


def _check_chat(obj: dict, fail) -> dict:
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise fail("messages must be a non-empty list", 'e.g. [{"role": "user", ...}]')
    out = {"messages": [_check_message(i, m, fail) for i, m in enumerate(msgs)]}
    if not any(m["role"] == "assistant" for m in out["messages"]):
        raise fail("conversation has no assistant turn, so nothing would be trained",
                   "add an assistant message or remove the line")
    tools = obj.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise fail("tools must be a list of objects (function schemas)",
                       'e.g. [{"type": "function", "function": {"name": "f", ...}}]')
        if tools:
            out["tools"] = tools
    return out


def _answer(value, key: str, fail) -> str:
    if isinstance(value, dict) and value.get("role") == "assistant":
        value = value.get("content")
    if not isinstance(value, str):
        raise fail(f"{key} must be a string or an assistant message", f'e.g. "{key}": "Sure." '
                   f'or {{"role": "assistant", "content": "Sure."}}')
    return value


def _check_preference(fmt: str, obj: dict, fail) -> dict:
    """dpo/kto: the prompt (a string, or messages ending before the answer) and the answer(s)."""
    if isinstance(obj.get("messages"), list):
        prompt = _check_chat({"messages": obj["messages"] + [
            {"role": "assistant", "content": ""}]}, fail)["messages"][:-1]
    elif isinstance(obj.get("prompt"), str):
        prompt = obj["prompt"]
    else:
        raise fail(f"{fmt} record needs a prompt (string) or messages (list)",
                   'e.g. {"prompt": "Hi", ...}')
    if fmt == "dpo":
        return {"prompt": prompt, "chosen": _answer(obj["chosen"], "chosen", fail),
                "rejected": _answer(obj["rejected"], "rejected", fail)}
    if not isinstance(obj["label"], bool):
        raise fail(f"label must be true or false, got {obj['label']!r}",
                   "true = thumbs up (desirable), false = thumbs down")
    return {"prompt": prompt, "completion": _answer(obj["completion"], "completion", fail),
            "label": obj["label"]}


def read_jsonl(path: str | Path, fmt: str = "auto") -> list[Record]:
    """Read and validate every line of a JSONL file; the format is detected from the first record
    (or forced by `fmt`) and every record must match it."""
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise UserError("data file not found", file=file, hint="check data.train/valid/test")
    records: list[Record] = []
    with open(p, "rb") as f:  # bytes, so a bad byte is reported with its line
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise UserError(f"not UTF-8 text (byte {e.start} of the line)", file=file,
                                line=line_no, hint="save the file as UTF-8") from None
            except json.JSONDecodeError as e:
                raise UserError(f"not valid JSON ({e.msg} at column {e.colno})", file=file,
                                line=line_no, hint="each line must be one JSON object") from None
            except RecursionError:
                raise UserError("JSON nested too deeply", file=file, line=line_no,
                                hint="each line must be one flat record") from None
            if not isinstance(obj, dict):
                raise UserError("line is not a JSON object", file=file, line=line_no,
                                hint="each line must be one JSON object")
            if fmt == "auto":
                fmt = detect_format(obj) or ""
                if not fmt:
                    raise UserError(
                        f"cannot tell the format from keys {sorted(obj)}", file=file,
                        line=line_no, hint="use messages (chat), instruction/input/output "
                        "(alpaca), prompt/completion, text, prompt/chosen/rejected (dpo) or "
                        "prompt/completion/label (kto); or set data.format")
            records.append(Record(fmt, _with_style(_check(fmt, obj, file, line_no), obj, file,
                                                   line_no), file, line_no))
    if not records:
        raise UserError("file is empty", file=file, hint="give at least one JSONL record")
    return records
