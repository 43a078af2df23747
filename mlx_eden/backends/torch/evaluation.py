"""Evaluation on PyTorch: greedy batched generation (transformers' generate with left padding)
and per-row log-likelihoods of the trained tokens."""

from __future__ import annotations

import numpy as np
import torch

from .model import attention_mask, causal_lm

PAD = 0  # any id: padded positions are masked out of attention and never read back


def generate(peft_model, prompts: list[list[int]], max_new_tokens: int,
             stop: set[int]) -> list[list[int]]:
    """Greedy continuations, stop token excluded. Left padding: every row's last prompt token
    sits in the last column, so one decoding step serves the batch; transformers derives the
    positions from the attention mask, so padding does not shift RoPE."""
    from transformers import GenerationConfig

    lm = causal_lm(peft_model)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        attn[i, width - len(p):] = 1
    # A config of our own: the model's generation_config may sample or carry its own EOS ids.
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=sorted(stop) or None, pad_token_id=PAD)
    with torch.inference_mode():
        out = lm.generate(input_ids=ids, attention_mask=attn, generation_config=config)
    answers = []
    for row in out[:, width:].tolist():
        cut = next((j for j, t in enumerate(row) if t in stop), len(row))
        answers.append(row[:cut])
    return answers


def sequence_logprobs(peft_model, inputs, targets, weights, segments,
                      packed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log p(target) over weighted positions, their count) per row, float64/int64 (B,).
    Logits only at weighted positions (the rest are never read)."""
    lm = causal_lm(peft_model)
    mask = attention_mask(segments) if packed else None
    with torch.inference_mode():
        h = lm.model(input_ids=inputs, attention_mask=mask, use_cache=False).last_hidden_state
        keep = weights != 0  # (B, L)
        logits = lm.lm_head(h[keep]).float()  # (N, V)
        picked = torch.log_softmax(logits, -1).gather(-1, targets[keep][:, None])[:, 0]
        sums = torch.zeros(inputs.shape[0], dtype=torch.float64)
        rows = torch.nonzero(keep)[:, 0]
        sums.index_add_(0, rows, (picked * weights[keep]).double())
        counts = weights.sum(1).long()
    return sums.numpy(), counts.numpy()
