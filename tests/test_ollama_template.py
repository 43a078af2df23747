"""The Modelfile's Go template renders the same text as the model's Jinja chat template.

The Go side runs in tests/goemu.py (an emulation of Go's text/template; Go is not installed), fed
the values Ollama gives a template (see mlx_eden/export/ollama_templates.py). The Jinja side is
the tokenizer's own apply_chat_template. Compared on Qwen2.5's and Qwen3's real templates and on
the tiny model's: with and without a system message, multi-turn, tools with calls and results,
and (Qwen3) reasoning with thinking on, off and unset. JSON inside tool blocks is compared as
JSON: Ollama prints it compactly (json.Marshal), Jinja's tojson with spaces.
"""

from __future__ import annotations

import json
import re

import pytest

from mlx_eden.data.render import template_args
from mlx_eden.export.ollama import default_system
from mlx_eden.export.ollama_templates import go_template

from .goemu import GoJSON, render

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "도시 이름"}}}}}


def call(name, **args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


USER_ONLY = [{"role": "user", "content": "안녕하세요! 이야기해 줄래요?"}]
WITH_SYSTEM = [{"role": "system", "content": "You are terse."}] + USER_ONLY
MULTI = WITH_SYSTEM + [{"role": "assistant", "content": "네, 좋아요."},
                       {"role": "user", "content": "What is 17 times 43?"}]
TOOLS = [{"role": "user", "content": "Weather in Seoul and Busan?"},
         {"role": "assistant", "content": "", "tool_calls": [call("get_weather", city="Seoul"),
                                                            call("get_weather", city="Busan")]},
         {"role": "tool", "content": '{"temp": 3}'},
         {"role": "tool", "content": '{"temp": 9}'},
         {"role": "assistant", "content": "Seoul 3°C, Busan 9°C."},
         {"role": "user", "content": "Thanks. And Jeju?"},
         {"role": "assistant", "content": "Checking.", "tool_calls": [call("get_weather",
                                                                            city="Jeju")]},
         {"role": "tool", "content": '{"temp": 12}'}]
REASONING = [{"role": "user", "content": "Is 91 prime?"},
             {"role": "assistant", "content": "No: 91 = 7 × 13.",
              "reasoning_content": "Try 7: 7 × 13 = 91."},
             {"role": "user", "content": "And 97?"},
             {"role": "assistant", "content": "", "reasoning_content": "Check 2, 3, 5, 7.",
              "tool_calls": [call("is_prime", n=97)]},
             {"role": "tool", "content": "true"}]
CASES = {"user only": (USER_ONLY, None), "system": (WITH_SYSTEM, None), "multi-turn": (MULTI, None),
         "tools": (TOOLS, [WEATHER]), "tools + system": (WITH_SYSTEM + TOOLS[1:], [WEATHER])}
QWEN3_CASES = {"reasoning": (REASONING, [WEATHER])}


def ollama_values(messages, tools, system, think):
    """What Ollama hands the template: SYSTEM prepended when the chat has none, reasoning apart
    from content, tool schemas and arguments as Go values printed as JSON."""
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}] + messages
    msgs = [{"Role": m["role"], "Content": m["content"],
             "Thinking": m.get("reasoning_content", ""),
             "ToolCalls": [{"Function": {"Name": c["function"]["name"],
                                         "Arguments": GoJSON(c["function"]["arguments"])}}
                           for c in m.get("tool_calls", [])]} for m in messages]
    return {"System": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
            "Messages": msgs, "Tools": [{"Type": "function", "Function": GoJSON(
                t["function"], sort_keys=False)} for t in tools or []],
            "Think": bool(think), "IsThinkSet": think is not None}


def canon(text: str) -> str:
    """Lines that are JSON objects rewritten one canonical way (sorted keys, compact)."""
    def one(line):
        try:
            return json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)
        except ValueError:  # e.g. the template's own '{"name": <function-name>, ...}'
            return line
    return "\n".join(one(line) if re.fullmatch(r"\{.*\}", line) else line
                     for line in text.split("\n"))


def jinja_text(tok, messages, tools, args):
    """The Jinja rendering Ollama's template stands for: the generation prompt after a user or
    tool turn; after an assistant turn, that turn left open (Ollama continues it)."""
    if messages[-1]["role"] == "assistant":
        text = tok.apply_chat_template(messages, tools=tools, tokenize=False, **args)
        return text.removesuffix("\n").removesuffix("<|im_end|>")
    return tok.apply_chat_template(messages, tools=tools, tokenize=False,
                                   add_generation_prompt=True, **args)


def check_same(tok, cases, recipe_args, thinks=(None,)):
    """Every case, rendered both ways, for each Ollama `think` setting; returns how many ran."""
    jinja = tok.chat_template
    args = template_args(jinja, recipe_args)
    system = default_system(jinja, args)
    go = go_template(jinja, args)
    n = 0
    for name, (messages, tools) in cases.items():
        for ending in (messages, messages[:-1] if messages[-1]["role"] == "tool" else None):
            if not ending or ending[-1]["role"] == "system":
                continue
            for think in thinks:
                want_args = dict(args) if think is None else {**args, "enable_thinking": think}
                want = jinja_text(tok, ending, tools, want_args)
                got = render(go, ollama_values(ending, tools, system, think))
                assert canon(got) == canon(want), f"{name}, think={think}"
                n += 1
    return n


def test_modelfile_template_matches_qwen25(qwen25_tok):
    assert default_system(qwen25_tok.chat_template, {}) == \
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    assert check_same(qwen25_tok, CASES, {}) == 7


@pytest.mark.parametrize("recipe_args", [{}, {"enable_thinking": True}])
def test_modelfile_template_matches_qwen3(qwen3_tok, recipe_args):
    assert default_system(qwen3_tok.chat_template, {}) is None
    cases = {**CASES, **QWEN3_CASES}
    assert check_same(qwen3_tok, cases, recipe_args, thinks=(None, True, False)) == 27


def test_modelfile_template_matches_tiny(tokenizer):
    plain = {k: v for k, v in CASES.items() if not v[1]}
    assert default_system(tokenizer.chat_template, {}) == "You are a helpful assistant."
    assert check_same(tokenizer, plain, {}) == 3


def test_qwen3_default_is_non_thinking(qwen3_tok):
    """Unset think in Ollama = the recipe's default (enable_thinking false): the empty block."""
    go = go_template(qwen3_tok.chat_template, template_args(qwen3_tok.chat_template, {}))
    text = render(go, ollama_values(USER_ONLY, None, None, None))
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    on = go_template(qwen3_tok.chat_template, {"enable_thinking": True})
    assert render(on, ollama_values(USER_ONLY, None, None, None)).endswith("assistant\n")
