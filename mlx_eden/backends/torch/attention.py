"""Causal self-attention as blocks of plain matmuls, for bf16/fp16 bases on the CPU.

Why: PyTorch's CPU flash-attention kernel runs no faster in bf16 than in float32, while bf16
matmuls run ~2.6x faster than float32 on CPUs with native bf16. On the coder benchmark's shape
(38M model, head_dim 64, 8 query / 2 key-value heads, batch 2, one AVX512-BF16 core) attention
was 28-41% of a bf16 step. Forward + backward of one layer's attention (ms, bf16):

    width          96    240    384    624   1272
    flash (sdpa)  4.7   13.8   28.8   71.3  173.2
    blocks of 128 1.9    6.6   12.9   27.9  112.5

Queries go in blocks of `BLOCK` rows; each block multiplies against the keys up to its own end
(so at most one block's square above the diagonal is computed and masked, not half of the
whole (L, L) score matrix), and the grouped query heads of one key/value head share one matmul
(no `repeat_kv` copies). The scores and probabilities are bf16, softmax accumulates in float32
inside the kernel; gradients against a float64 reference stay as close as flash's (relative
4-7e-3 vs 7e-3-1e-2). In float32 the blocks gain nothing at long widths (214 vs 216 ms at
1,272), so `model.load_base` picks this only for half-precision bases.

Only the plain causal case runs here (no mask tensor, as many queries as keys, no dropout,
no sliding window); every other call (packed rows' block-diagonal masks, generation with a
KV cache) goes to transformers' own sdpa function, with sdpa's mask creation.
"""

from __future__ import annotations

import torch

NAME = "eden_blocked"
BLOCK = 128  # 64-192 measured within noise of each other at widths 96-1,272; 512 was slower


def blocked_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float,
                   block: int = BLOCK) -> torch.Tensor:
    """softmax(q k^T * scaling + causal mask) v for q (B, H, L, D), k and v (B, KV, L, D)
    with H a multiple of KV (query head h reads key/value head h // (H / KV)).
    Returns (B, H, L, D)."""
    B, H, L, D = q.shape
    KV = k.shape[1]
    G = H // KV
    q = (q * scaling).reshape(B, KV, G, L, D)  # scale the small tensor, not the scores
    kt = k.transpose(-1, -2)  # (B, KV, D, L)
    outs = []
    for s in range(0, L, block):
        e = min(L, s + block)
        n = e - s
        scores = (q[:, :, :, s:e].reshape(B, KV, G * n, D) @ kt[..., :e]).view(B, KV, G, n, e)
        above = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores[..., s:e].masked_fill_(above, float("-inf"))  # keys after the query
        probs = torch.softmax(scores, dim=-1).view(B, KV, G * n, e)
        outs.append((probs @ v[:, :, :e]).view(B, KV, G, n, D))
    return torch.cat(outs, dim=3).view(B, H, L, D)


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, **kwargs):
    """transformers' attention-function signature; returns ((B, L, H, D), None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (attention_mask is None and dropout == 0.0 and query.shape[2] == key.shape[2] > 1
             and kwargs.get("sliding_window") is None and kwargs.get("softcap") is None
             and kwargs.get("position_bias") is None and kwargs.get("is_causal") is not False
             and getattr(module, "is_causal", True) and not kwargs.get("output_attentions"))
    if not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = blocked_causal(query, key, value, scale)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make NAME a transformers attention implementation (masks built as for sdpa); returns
    the name to pass as `attn_implementation`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME
