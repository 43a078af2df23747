"""Memory of `export gguf --quant q4_k_m --verify` after training: llama.cpp runs the GGUF, then
MLX runs the model as trained (base as stored + adapter), one after the other with only probe
logits kept between them (export/verify.py), so the verification peak is the larger phase,
not the sum. Shapes only: nothing is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from .planner import F32, Plan, weight_bytes

# Q4_K_M is a mix (q4_K, with q6_K for half of attn_v/ffn_down and for the output matrix): 4.85
# bits per weight overall, from the published Qwen2.5-32B-Instruct-Q4_K_M.gguf (19.85 GB for
# 32.76B parameters).
Q4_K_M_BITS = 4.85
PROBE_TOKENS = 96  # each probe prompt is cut to this (export/verify.py's max_tokens)
LLAMA_CTX = 256  # llama.cpp's context in --verify: 96 probe tokens + 32 greedy, rounded up


@dataclass
class VerifyPlan:
    """Peak of each verification phase, and the budget it is judged against."""

    phases: dict[str, int]
    budget: int

    @property
    def peak(self) -> int:
        return max(self.phases.values())

    @property
    def fits(self) -> bool:
        return self.peak <= self.budget


def verify_plan(plan: Plan) -> VerifyPlan:
    """The two phases of a q4_k_m `--verify` against the trained model of `plan`'s recipe."""
    shape, s = plan.shape, plan.settings
    kv_cache = 2 * shape.layers * LLAMA_CTX * shape.kv_heads * shape.head_dim * F32
    llama = int(shape.params_total * Q4_K_M_BITS / 8) + kv_cache + LLAMA_CTX * shape.vocab * F32
    # MLX's reference is float32: a 4-bit base keeps its packed weights, scales widen to 4 bytes
    mlx = weight_bytes(shape, F32, s.quant_bits, s.quant_group) + \
        plan.estimate.sizes["adapters"] + PROBE_TOKENS * shape.vocab * F32
    return VerifyPlan({"llama.cpp (q4_k_m GGUF)": llama, "MLX (as trained)": mlx},
                      plan.budget_bytes)
