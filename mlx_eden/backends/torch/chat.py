"""Streaming generation for `eden-mlx chat` on torch: transformers' generate (greedy) with its
TextIteratorStreamer, on the base with the adapter loaded by peft from a PEFT folder."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

Stream = Callable[[list[int], int, set], Iterator[tuple[str, int]]]


def load_stream(model_dir: Path, peft_dir: Path | None, tok) -> Stream:
    """A function streaming (text piece, tokens so far) for prompt ids, stopping before any id
    in `stop`, in float32 on the CPU."""
    from transformers import AutoModelForCausalLM, GenerationConfig, TextIteratorStreamer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its bar would land in the middle of the chat
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        if peft_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(peft_dir))
    model.eval()

    class Counting(TextIteratorStreamer):
        generated = 0

        def put(self, value):
            if not self.next_tokens_are_prompt:
                self.generated += value.numel()
            super().put(value)

    def stream(ids: list[int], max_tokens: int, stop: set) -> Iterator[tuple[str, int]]:
        streamer = Counting(tok, skip_prompt=True, skip_special_tokens=True)
        config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=sorted(stop), pad_token_id=sorted(stop)[0])
        worker = threading.Thread(target=_generate, args=(model, ids, config, streamer))
        worker.start()
        for text in streamer:
            yield text, streamer.generated
        worker.join()

    return stream


def _generate(model, ids, config, streamer) -> None:
    with torch.inference_mode():
        model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                       dtype=torch.long), generation_config=config, streamer=streamer)
