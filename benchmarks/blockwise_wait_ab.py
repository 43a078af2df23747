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
    .venv/bin/python benchmarks/blockwise_wait_ab.py --memory --repeats 1  # strict peaks, A and B
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
from _ab import model_ab_main  # noqa: E402
from _common import QWEN2_40M  # noqa: E402

from mlx_eden.backends.mlx import attention as A  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "blockwise_wait_ab.json"
# (model spec, batch, length); tiny_mha: KV heads = heads, where the wait changes the memory
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m": (QWEN2_40M, 2, 512)}

_waiting = mx.custom_function(A._forward)
_waiting.vjp(partial(A._backward, wait_dob=True))
VARIANTS = {"A_no_wait": A._attend, "B_wait": _waiting}
MEMORY_GROUP = "in_sample_round8_blockwise"  # benchmarks/planner_heldout_configs.json
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=True)

if __name__ == "__main__":
    model_ab_main(__doc__, "blockwise_wait_ab", RESULT, MODELS, LOSS, A, "_attend", VARIANTS,
                  MEMORY_GROUP)
