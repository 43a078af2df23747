"""The probe set every verification runs, and the numbers it reports.

Texts are varied on purpose (ChatML with special tokens, code, CJK, emoji, digits, odd
whitespace): they exercise the tokenizer paths where converters usually go wrong, and give the
logit comparisons a few different contexts.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CONVERSATION = [{"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "What is 17 times 43?"},
                {"role": "assistant", "content": "17 times 43 is 731."},
                {"role": "user", "content": "Tell me a short story about a blue dog."}]

TEXTS = [
    "def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 40))\n",
    "The quick brown fox jumps over 13 lazy dogs; it's 2024-06-01, isn't it?",
    "我想在apple工作1314天～ 你好，世界！ こんにちは",
    "🚀 emoji 😶‍🌫️ ✅ 🦙🦙  tabs\tand   spaces\n\n\nnewlines",
]


# Decomposed (NFD) Korean, as text copied on macOS often is. Qwen's tokenizer normalizes to NFC
# first; llama.cpp has no normalizer and tokenizes the jamo one by one (44 ids against 17 for this
# sentence with Qwen2.5's and Qwen3's vocabulary, measured), so NFD input reaches a GGUF model as
# different text. Probed
# separately from TEXTS: a difference here is a property of llama.cpp, reported, not a failure.
NFD_TEXT = unicodedata.normalize("NFD", "이야기해 줄래요? 오늘 날씨가 좋네요.")


@functools.lru_cache(maxsize=4)
def _tokenizer(model_dir: str):
    from ..data.render import load_tokenizer

    return load_tokenizer(model_dir)


def probe_texts(model_dir: str | Path) -> list[str]:
    """The conversation rendered by the model's own chat template, then the plain texts."""
    tok = _tokenizer(str(model_dir))
    texts = list(TEXTS)
    if tok.chat_template:
        texts.insert(0, tok.apply_chat_template(CONVERSATION, tokenize=False,
                                                add_generation_prompt=True))
    # Tokens added by a run (tokens.add, written by fuse): each must stay one id in every
    # consumer and its trained rows must reach the logits, so the probes use them.
    added = [t for t in tok.get_added_vocab() if not (t.startswith("<|") and t.endswith("|>"))]
    if added:
        texts.append(" ".join(f"{t} Tell me about the sea." for t in sorted(added)))
    return texts


def hf_ids(model_dir: str | Path, texts: list[str]) -> list[list[int]]:
    """Token ids by the Hugging Face tokenizer, special tokens parsed, nothing added."""
    tok = _tokenizer(str(model_dir))
    return [list(tok.encode(t, add_special_tokens=False)) for t in texts]


def nfd_note(tokenize, model_dir: str | Path) -> str:
    """How `tokenize` (llama.cpp's) and the Hugging Face tokenizer treat NFD text, in one line."""
    theirs, ours = len(tokenize(NFD_TEXT)), len(hf_ids(model_dir, [NFD_TEXT])[0])
    nfc = len(tokenize(unicodedata.normalize("NFC", NFD_TEXT)))
    if theirs == ours:
        return f"NFD text: {theirs} ids here and in transformers (same)"
    return (f"NFD text (decomposed Korean): {theirs} ids here vs {ours} in transformers, which "
            f"normalizes to NFC first ({nfc} here after NFC); this consumer does not normalize, "
            "so send it NFC text (unicodedata.normalize('NFC', s))")


def probe_ids(model_dir: str | Path, max_tokens: int = 96) -> list[list[int]]:
    """Token ids of the probe texts, each cut to `max_tokens` (logits need no long context)."""
    return [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]


# A position's top token counts only where the reference's top-2 margin exceeds this share of
# the reference logits' std: below it the two top tokens are a tie that any rounding may flip
# (a tiny q4_k_m GGUF failed at mean|Δ|/std 8e-3 on one last position whose margin was 2e-3).
TIE_MARGIN = 0.05


@dataclass
class Delta:
    """How far logits `a` are from reference logits `b`, over every position of every prompt."""

    max_abs: float
    mean_abs: float
    rel: float  # mean |a - b| / std(b): scale-free, comparable across models
    argmax_agree: float  # fraction of positions whose top token is the same
    last_argmax_equal: bool  # the next token after each prompt is the same for all prompts
    # the same two, judged only where the reference's top-2 margin is above TIE_MARGIN * std
    decided_agree: float = 1.0
    last_decided_equal: bool = True
    ties: int = 0  # positions left out as ties

    def __str__(self) -> str:
        return (f"max|Δ| {self.max_abs:.2e}, mean|Δ| {self.mean_abs:.2e}, "
                f"mean|Δ|/std {self.rel:.2e}, argmax agreement {self.argmax_agree:.1%} "
                f"({self.decided_agree:.1%} leaving out {self.ties} near-ties)")

    def as_dict(self) -> dict:
        return asdict(self)


def compare(a: list[np.ndarray], b: list[np.ndarray]) -> Delta:
    """Compare two lists of (L, V) logits (same prompts, same order)."""
    a_all, b_all = np.concatenate(a).astype(np.float64), np.concatenate(b).astype(np.float64)
    diff = np.abs(a_all - b_all)
    std = max(b_all.std(), 1e-12)
    agree = a_all.argmax(-1) == b_all.argmax(-1)
    top2 = np.sort(b_all, axis=-1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > TIE_MARGIN * std
    last = np.cumsum([len(x) for x in b]) - 1  # the last position of each prompt
    return Delta(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                 rel=float(diff.mean() / std), argmax_agree=float(agree.mean()),
                 last_argmax_equal=bool(agree[last].all()),
                 decided_agree=float(agree[decided].mean()) if decided.any() else 1.0,
                 last_decided_equal=bool((agree | ~decided)[last].all()),
                 ties=int((~decided).sum()))


def added_token_prompts(model_dir: str | Path, adapter_dir: str | Path) -> list[list[int]]:
    """Probe prompts that use an adapter's new tokens (tokens.add), which the base's tokenizer
    does not know: each new id in front of a plain sentence."""
    from ..tokens import read_tokens

    info = read_tokens(adapter_dir)
    if info is None:
        return []
    tail = hf_ids(model_dir, [" Tell me about the sea."])[0]
    return [[info["first_id"] + i, *tail] for i in range(len(info["tokens"]))]
