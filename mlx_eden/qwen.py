"""Facts about the Qwen2/Qwen3 family that several rooms need: projection names and presets,
their parent modules, the tokenizer's split pattern and special tokens.

Neutral on purpose: the recipe, the adapter layout, the planner, the exporters, the backends and
tiny.py all read them from here, so none of them imports another for a constant (export used to
import tiny.py for the split pattern).
"""

from __future__ import annotations

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION_PROJECTIONS = PROJECTIONS[:4]
MLP_PROJECTIONS = PROJECTIONS[4:]
TARGET_PRESETS = {"all": PROJECTIONS, "attention": ATTENTION_PROJECTIONS, "mlp": MLP_PROJECTIONS}
# Where each projection sits in a decoder layer (mlx-lm's and transformers' module names).
PROJECTION_PARENT = {**{p: "self_attn" for p in ATTENTION_PROJECTIONS},
                     **{p: "mlp" for p in MLP_PROJECTIONS}}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen's embedding has spare rows no token uses (Qwen2.5: 151,936 rows, 151,665 tokens); a tiny
# model whose corpus runs out of merges has them too. GGUF names them as convert_hf_to_gguf does.
SPARE_ROW_NAME = "[PAD{}]"

# Qwen2's pre-tokenizer split (digits one by one). Using the exact pattern lets llama.cpp's
# built-in "qwen2" pre-tokenizer reproduce our token ids in the GGUF export.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
