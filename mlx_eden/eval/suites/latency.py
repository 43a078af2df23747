"""latency: per prompt, one at a time (a user's request), greedy at a fixed max_new_tokens
with stop tokens ignored so every prompt yields the same number of tokens. Time to first token
is measured as a separate one-token generation (prefill + one step): the backends' generate
returns whole answers, and a one-token run is what a user waits for before the first token."""

from __future__ import annotations

import time

import numpy as np

from ..suitedata import read_prompts


def run(ctx, suite) -> dict:
    records = read_prompts(suite.data, suite.limit)
    prompts = [ctx.prompt(r)[0] for r in records]
    ctx.backend.generate([prompts[0]], 2, set())  # warm-up: first-call compilation, caches
    probe = ctx.backend.memory_probe()
    if probe is not None:  # MLX: the allocator's peak restarts here, after load and warm-up
        probe.phase_memory()
    ttft, total, tokens = [], [], 0
    for p in prompts:
        t0 = time.perf_counter()
        ctx.backend.generate([p], 1, set())
        ttft.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = ctx.backend.generate([p], suite.max_new_tokens, set())
        total.append(time.perf_counter() - t0)
        tokens += len(out[0])
    # torch on CPU has no probe: its peak is the process's peak resident set
    peak = (probe.phase_memory() if probe is not None else ctx.backend.memory())["peak"]
    return {"metrics": {
        "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p90_s": float(np.percentile(ttft, 90)),
        "ttft_mean_s": float(np.mean(ttft)), "latency_p50_s": float(np.percentile(total, 50)),
        "latency_p90_s": float(np.percentile(total, 90)), "latency_mean_s": float(np.mean(total)),
        "tokens_per_s": tokens / sum(total), "peak_memory_gb": peak / 1e9, "n": len(prompts)},
        "max_new_tokens": suite.max_new_tokens}
