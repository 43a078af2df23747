"""A/B: the packed rows' attention mask on the fused path, a bool mask (A, before round 10) or
the additive float mask in the compute dtype (B, backends/mlx/model.attention_mask as shipped).
MLX's unfused attention applies a bool mask with `where`, whose gradient can hold one more
B x heads x L x L square in the backward (memory/attention.mask_bytes); an additive
mask passes the gradient through. This measures what the change costs in step time and what
it saves in strict memory.

Step time (MLX backend, float32): both variants run in one process on the same model and batch,
each a compiled value_and_grad of the training loss (fused attention, packed rows of two
samples, LoRA on every projection) followed by an AdamW update, timed from call to `mx.eval` of
the new parameters; the order alternates every round (benchmarks/_ab.py). Before timing,
the gradients of A and B are compared (bit-identical expected). Load average at start and end.

    .venv/bin/python benchmarks/packed_mask_ab.py                 # tiny, tiny_mha, 40m_mha
    .venv/bin/python benchmarks/packed_mask_ab.py --models tiny --rounds 3
    .venv/bin/python benchmarks/packed_mask_ab.py --memory --repeats 3 --jobs 2  # strict peaks
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
from _ab import (  # noqa: E402
    alternate,
    pooled,
    strict_child,
    strict_runs,
    summarize,
    timed_runs,
    variant_steps,
    write_json,
)
from _common import QWEN2_40M  # noqa: E402

from mlx_eden.backends.mlx import model as M  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "packed_mask_ab.json"
# (model spec, batch, length); *_mha: KV heads = heads, where the bool mask's square appears
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m_mha": ({**QWEN2_40M, "kv_heads": 8}, 2, 512)}
VARIANTS = {"A_bool": lambda segments, dtype: M.allowed_pairs(segments),
            "B_additive": M.attention_mask}
MEMORY_GROUP = "in_sample_round10_planner11m"  # benchmarks/planner_heldout_configs.json
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=False)


def run(name: str, rounds: int, root: Path) -> dict:
    spec, B, L = MODELS[name]
    step, identical = variant_steps(write_tiny(root / name, TinySpec(**spec)), B, L, "float32",
                                    LOSS, M, "attention_mask", VARIANTS)
    times = alternate(step, list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
           **summarize(times, "A_bool", "B_additive")}
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        M.attention_mask = VARIANTS[sys.argv[3]]
        strict_child(MEMORY_GROUP, sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,tiny_mha,40m_mha")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    ap.add_argument("--memory", action="store_true",
                    help=f"instead: strict peaks of {MEMORY_GROUP}, A and B, into --out")
    ap.add_argument("--repeats", type=int, default=2, help="--memory: runs per variant")
    ap.add_argument("--jobs", type=int, default=1, help="--memory: children at a time")
    args = ap.parse_args()
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.memory:
        old["memory_strict_mib"] = {"group": MEMORY_GROUP, "columns": ["peak", "backward"],
                                    "configs": strict_runs(__file__, MEMORY_GROUP, list(VARIANTS),
                                                           args.repeats, args.jobs)}
        write_json(args.out, {"benchmark": "packed_mask_ab", **old})
        return
    run_ = timed_runs(run, args.models.split(","), args.rounds, "models")
    runs = [*old.get("runs", []), run_] if args.append else [run_]
    write_json(args.out, {**old, "benchmark": "packed_mask_ab", "summary": pooled(runs),
                          "runs": runs})
    print("wrote", args.out, pooled(runs))


if __name__ == "__main__":
    main()
