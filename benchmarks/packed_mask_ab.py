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

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
from _ab import model_ab_main  # noqa: E402
from _common import QWEN2_40M  # noqa: E402

from mlx_eden.backends.mlx import model as M  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "packed_mask_ab.json"
# (model spec, batch, length); *_mha: KV heads = heads, where the bool mask's square appears
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m_mha": ({**QWEN2_40M, "kv_heads": 8}, 2, 512)}
VARIANTS = {"A_bool": lambda segments, dtype: M.allowed_pairs(segments),
            "B_additive": M.attention_mask}
MEMORY_GROUP = "in_sample_round10_planner11m"  # benchmarks/planner_heldout_configs.json
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=False)

if __name__ == "__main__":
    model_ab_main(__doc__, "packed_mask_ab", RESULT, MODELS, LOSS, M, "attention_mask",
                  VARIANTS, MEMORY_GROUP)
