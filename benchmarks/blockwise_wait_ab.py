"""A/B: does making each block's output-gradient slice wait (`mx.depends(dob, prev)`,
backends/mlx/attention._backward(wait_dob=True)) cost step time? Its memory is measured by
benchmarks/planner_heldout.py's strict runs; this times the training step (MLX backend, float32).

Both variants run in one process on the same model and batch: A is the shipped formula (no
wait), B the one with the wait. Each is a compiled value_and_grad of the
training loss (blockwise attention, packed rows, LoRA on every projection) followed by an AdamW
update, timed from call to `mx.eval` of the new parameters, the same way for both; the order
alternates every round (A B, B A, ...). Before timing, the gradients of A and B are compared
(bit-identical expected). Load average is recorded at start and end.

    .venv/bin/python benchmarks/blockwise_wait_ab.py                 # tiny + 40m, 7 rounds
    .venv/bin/python benchmarks/blockwise_wait_ab.py --models tiny --rounds 3
    .venv/bin/python benchmarks/blockwise_wait_ab.py --memory   # strict peaks, A and B
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
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

from mlx_eden.backends.mlx import attention as A  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "blockwise_wait_ab.json"
# (model spec, batch, length); tiny_mha: KV heads = heads, where the wait changes the memory
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m": (QWEN2_40M, 2, 512)}

_waiting = mx.custom_function(A._forward)
_waiting.vjp(partial(A._backward, wait_dob=True))
VARIANTS = {"A_no_wait": A._attend, "B_wait": _waiting}
MEMORY_GROUP = "in_sample_round8_blockwise"  # benchmarks/planner_heldout_configs.json
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=True)


def run(name: str, rounds: int, root: Path) -> dict:
    spec, B, L = MODELS[name]
    step, identical = variant_steps(write_tiny(root / name, TinySpec(**spec)), B, L, "float32",
                                    LOSS, A, "_attend", VARIANTS)
    times = alternate(step, list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
           **summarize(times, "A_no_wait", "B_wait")}
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        A._attend = VARIANTS[sys.argv[3]]
        strict_child(MEMORY_GROUP, sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,tiny_mha,40m")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    ap.add_argument("--memory", action="store_true",
                    help=f"instead: strict peaks of {MEMORY_GROUP}, A and B, into --out")
    args = ap.parse_args()
    if args.memory:
        result = json.loads(args.out.read_text())
        result["memory_strict_mib"] = {"group": MEMORY_GROUP, "columns": ["peak", "backward"],
                                       "configs": strict_runs(__file__, MEMORY_GROUP,
                                                              list(VARIANTS))}
        write_json(args.out, result)
        return
    run_ = timed_runs(run, args.models.split(","), args.rounds, "models")
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    runs.append(run_)
    write_json(args.out, {"benchmark": "blockwise_wait_ab", "summary": pooled(runs),
                          "runs": runs})
    print("wrote", args.out, pooled(runs))

if __name__ == "__main__":
    main()
