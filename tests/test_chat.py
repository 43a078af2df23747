"""`eden-mlx chat` driven through a pseudo-terminal (pexpect): streamed answers equal greedy
generation of the same conversation rendered by the model's template; the history carries into
the next turn; /system and /reset change what the model is asked; tokens/s is shown; both
backends."""

from __future__ import annotations

import re
import sys

import pytest

from .conftest import ROOT, needs_torch

pexpect = pytest.importorskip("pexpect", reason="needs the dev extra (pexpect)")

TOKENS = 10
FOOTER = re.compile(r"\[(\d+) tokens · ([\d.]+) tok/s\]")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Chat:
    """`eden-mlx chat ARGS` in a pseudo-terminal; `say` returns the streamed answer."""

    def __init__(self, *args):
        self.child = pexpect.spawn(sys.executable, ["-m", "mlx_eden.cli", "chat", *map(str, args),
                                                    "--max-tokens", str(TOKENS)],
                                   cwd=str(ROOT), encoding="utf-8", timeout=120,
                                   dimensions=(24, 80))
        self.child.expect("you> ")

    def say(self, line: str) -> tuple[str, int]:
        self.child.sendline(line)
        self.child.expect("model> ")
        self.child.expect(FOOTER)
        tokens = int(self.child.match.group(1))
        text = ANSI.sub("", self.child.before).replace("\r\n", "\n")
        self.child.expect("you> ")
        return text[:-1] if text.endswith("\n") else text, tokens

    def command(self, line: str, echo: str) -> None:
        self.child.sendline(line)
        self.child.expect(re.escape(echo))
        self.child.expect("you> ")

    def close(self) -> int:
        self.child.sendline("/quit")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


def greedy_answers(model, adapter, conversations: list[list[dict]]) -> list[str]:
    """MLX greedy generation of each conversation's next answer (what chat must stream)."""
    from mlx_eden.backends.mlx.inference import greedy, load
    from mlx_eden.data.prompting import conversation_ids, stop_ids
    from mlx_eden.data.render import load_tokenizer

    tok = load_tokenizer(model)
    lm, _ = load(model, adapter)
    stop, out = stop_ids(tok), []
    for messages in conversations:
        ids = greedy(lm, [conversation_ids(tok, messages, {})], TOKENS)[0]
        cut = next((i for i, t in enumerate(ids) if t in stop), len(ids))
        out.append(tok.decode(ids[:cut], skip_special_tokens=True))
    return out


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize("backend", ["mlx", pytest.param("torch", marks=needs_torch)])
def test_chat_streams_greedy_answers_with_history_system_and_reset(backend, tiny_qwen2,
                                                                    lora_qwen2):
    chat = Chat("--model", tiny_qwen2, "--adapter", lora_qwen2, "--backend", backend)
    first, n1 = chat.say("Tell me about the sea.")
    second, _ = chat.say("And the sky?")
    chat.command("/system Be brief.", "(system prompt: Be brief.)")
    third, _ = chat.say("Hello")
    chat.command("/reset", "(conversation cleared)")
    chat.command("/system", "(system prompt: none)")
    again, _ = chat.say("Tell me about the sea.")
    assert chat.close() == 0
    turn1 = [user("Tell me about the sea.")]
    turn2 = turn1 + [assistant(first), user("And the sky?")]
    turn3 = [{"role": "system", "content": "Be brief."}, *turn2[1:], assistant(second),
             user("Hello")]
    expected = greedy_answers(tiny_qwen2, lora_qwen2, [turn1, turn2, turn3])
    assert first.strip() and 0 < n1 <= TOKENS + 1
    assert [first, second, third] == expected
    assert again == first  # /reset forgot the history (and /system with no text the prompt)
