"""llama.cpp, the real consumer of our GGUF files, through llama-cpp-python: tokenize and
compute logits for every position, with a float32 KV cache so the comparison with MLX measures
the weights, not cache rounding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise UserError("verifying in llama.cpp needs llama-cpp-python (the gguf extra)",
                        hint="pip install -e '.[gguf]' in the clone") from None
    return llama_cpp


class LlamaCpp:
    """One GGUF model loaded in llama.cpp, optionally with a LoRA adapter GGUF applied."""

    def __init__(self, model: str | Path, lora: str | Path | None = None, n_ctx: int = 256):
        llama_cpp = _llama_cpp()
        kwargs = {}
        if lora is not None:
            kwargs = {"lora_path": str(lora), "lora_scale": 1.0}
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(model), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                verbose=False, seed=0, n_threads=max(1, min(4, os.cpu_count() or 1)),
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, **kwargs)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"llama.cpp cannot load it: {e}", file=str(lora or model)) from None
        self.n_ctx = n_ctx

    def tokenize(self, text: str) -> list[int]:
        """Ids as llama.cpp tokenizes `text`: special tokens parsed, no BOS added."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def logits(self, ids: list[int]) -> np.ndarray:
        """(len(ids), vocab) float32 logits of one prompt, from an empty cache."""
        if len(ids) > self.n_ctx:
            raise ValueError(f"prompt of {len(ids)} tokens exceeds n_ctx {self.n_ctx}")
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def all_logits(self, prompts: list[list[int]]) -> list[np.ndarray]:
        return [self.logits(p) for p in prompts]

    def greedy(self, ids: list[int], n: int) -> list[int]:
        """The first `n` tokens llama.cpp picks greedily after `ids` (EOS does not stop it:
        both sides of a comparison generate exactly `n`). By hand rather than through
        Llama.generate, whose sampler chain adds penalties unless every one is turned off."""
        if len(ids) + n > self.n_ctx:
            raise ValueError(f"{len(ids)} + {n} tokens exceed n_ctx {self.n_ctx}")
        self.llm.reset()
        self.llm.eval(ids)
        out: list[int] = []
        for _ in range(n):
            out.append(int(np.argmax(self.llm.scores[self.llm.n_tokens - 1])))
            self.llm.eval([out[-1]])
        return out

    def close(self) -> None:
        self.llm.close()
