"""Streaming generation for `eden-mlx chat` on MLX: mlx-lm's stream_generate (its streaming
detokenizer keeps multi-byte characters whole), greedy, over a model loaded as its run trained it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from .inference import load

Stream = Callable[[list[int], int, set], Iterator[tuple[str, int]]]


def load_stream(model_dir: Path, adapter: Path | None, tok) -> Stream:
    """A function streaming (text piece, tokens so far) for prompt ids, stopping before any id
    in `stop`. The model runs in float32 (MLX's CPU has no fast bf16; on Metal it is exact)."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    model, _ = load(model_dir, adapter, as_trained=True)

    def stream(ids: list[int], max_tokens: int, stop: set) -> Iterator[tuple[str, int]]:
        wrapper = TokenizerWrapper(tok, eos_token_ids=sorted(stop))
        for response in stream_generate(model, wrapper, ids, max_tokens=max_tokens):
            yield response.text, response.generation_tokens

    return stream
