"""The planner against published mlx-lm runs on Metal (issue 22): exact shapes from the shipped
configs (mlx_eden/assets/qwen_configs), the runs' settings, no measurement here.

    .venv/bin/python benchmarks/planner_metal_points.py   # prints a table, writes nothing

mlx_lm.lora prints mx.get_peak_memory() / 1e9 ("Peak mem ... GB"): decimal GB. What the planner
does not model on Metal: the allocator's buffer cache and size rounding (Metal heaps round
allocations up; freed buffers stay in MLX's cache and count towards the peak until reused), and
the scheduler's run-ahead (mlx_lm.lora sets no memory limit, so MLX evaluates ahead of the
computation; the planner prices strict, one-op-at-a-time execution plus one op's headroom).
mlx_lm.lora's own loss (nn.losses.cross_entropy on bf16 logits) also differs from ours.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POINTS = [  # (name, model, tokens, targets, measured GB)
    ("Qwen2.5-14B 4-bit, q/v, 4 layers, ~19 tok", "mlx-community/Qwen2.5-14B-Instruct-4bit", 19,
     "[q_proj, v_proj]", 8.422),
    ("Qwen2.5-7B 4-bit, all proj, 4 layers, 16 tok", "mlx-community/Qwen2.5-7B-Instruct-4bit",
     16, "all", 4.493),
    ("Qwen2.5-7B 4-bit, all proj, 4 layers, 129 tok", "mlx-community/Qwen2.5-7B-Instruct-4bit",
     129, "all", 5.378),
]


def rows() -> list[dict]:
    """Each published point with the planner's figures (decimal GB)."""
    from mlx_eden.memory.planner import Settings, estimate
    from mlx_eden.memory.shapes import load_config, shape_from_config
    from mlx_eden.recipe import load_recipe

    out = []
    for name, model, tokens, targets, measured in POINTS:
        shape = shape_from_config(load_config(model)[0])
        recipe = load_recipe(None, [f"model.path={model}", f"data.max_seq_length={tokens}",
                                    "train.batch_size=1", "adapter.rank=8", "adapter.layers=4",
                                    f"adapter.targets={targets}", "model.dtype=bfloat16",
                                    "train.optimizer=adam"])
        e = estimate(shape, Settings.from_recipe(recipe, shape, metal=True))
        out.append({"name": name, "model": model, "tokens": tokens, "measured_gb": measured,
                    "planner_gb": round(e.needed / 1e9, 3),
                    "planner_with_headroom_gb": round(e.peak / 1e9, 3),
                    "weights_gb": round(e.sizes["base weights"] / 1e9, 3),
                    "error": round((e.needed / 1e9 - measured) / measured, 4)})
    return out


def main() -> None:
    for r in rows():
        print(f"{r['name']:48s} measured {r['measured_gb']:6.3f} GB  planner "
              f"{r['planner_gb']:6.3f} GB ({r['error'] * 100:+5.1f}%), with headroom "
              f"{r['planner_with_headroom_gb']:6.3f} GB, weights {r['weights_gb']:.3f} GB")


if __name__ == "__main__":
    main()
