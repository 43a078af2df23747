"""Suite data: JSONL records read with file:line errors, like training data.

Prompt suites (generate, validate, style, latency) take chat, alpaca or completions records whose
answer is optional (`{"prompt": "..."}` is enough; a reference, when present, feeds the `exact`
check). Choice suites take `{"question", "choices", "answer"}`. Loss and classify suites read
training-format records with data/formats.py as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.formats import Record, _check, detect_format
from ..errors import UserError

# The answer key of each format, filled with "" when a prompt record has none.
_ANSWER = {"completions": "completion", "alpaca": "output"}


def _lines(path: str | Path):
    """(line number, JSON object) for every non-empty line; bad JSON names file and line."""
    file = str(path)
    if not Path(path).is_file():
        raise UserError("suite data file not found", file=file,
                        hint="check the suite's data key in eval.suites")
    found = False
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise UserError(f"not valid JSON ({e.msg} at column {e.colno})", file=file,
                                line=no, hint="each line must be one JSON object") from None
            if not isinstance(obj, dict):
                raise UserError("line is not a JSON object", file=file, line=no,
                                hint="each line must be one JSON object")
            found = True
            yield no, obj
    if not found:
        raise UserError("file is empty", file=file, hint="give at least one JSONL record")


def read_prompts(path: str | Path, limit: int | None = None) -> list[Record]:
    """Prompt records (chat, alpaca or completions; the answer optional) as training Records."""
    out: list[Record] = []
    for no, obj in _lines(path):
        if "prompt" in obj or "instruction" in obj:
            fmt = "completions" if "prompt" in obj else "alpaca"
            obj = {_ANSWER[fmt]: obj.get("reference", ""), **obj}
        elif isinstance(obj.get("messages"), list) and not any(
                isinstance(m, dict) and m.get("role") == "assistant" for m in obj["messages"]):
            obj = {**obj, "messages": [*obj["messages"], {"role": "assistant", "content": ""}]}
        fmt = detect_format(obj)
        if fmt not in ("chat", "alpaca", "completions"):
            raise UserError(f"cannot tell a prompt from keys {sorted(obj)}", file=str(path),
                            line=no, hint='give "prompt", "messages" or "instruction"')
        out.append(Record(fmt, _check(fmt, obj, str(path), no), str(path), no))
    return out[:limit] if limit else out


@dataclass(frozen=True)
class ChoiceItem:
    question: str
    choices: list[str]
    answer: int
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def read_choices(path: str | Path, limit: int | None = None) -> list[ChoiceItem]:
    """Multiple-choice items {"question": str, "choices": [str, ...], "answer": index}."""
    out = []
    for no, obj in _lines(path):
        q, choices, answer = obj.get("question"), obj.get("choices"), obj.get("answer")
        problem = None
        if not isinstance(q, str):
            problem = "question must be a string"
        elif not isinstance(choices, list) or len(choices) < 2 or \
                not all(isinstance(c, str) and c for c in choices):
            problem = "choices must be a list of two or more non-empty strings"
        elif not isinstance(answer, int) or isinstance(answer, bool) or \
                not 0 <= answer < len(choices):
            problem = f"answer must be the index of the right choice (0..{len(choices) - 1})"
        if problem:
            raise UserError(problem, file=str(path), line=no, hint='e.g. {"question": "2+2?", '
                            '"choices": ["3", "4"], "answer": 1}')
        out.append(ChoiceItem(q, choices, answer, str(path), no))
    return out[:limit] if limit else out
