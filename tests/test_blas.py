"""The fast BLAS changes speed, not results: the same matmul and model forward with MKL preloaded
and with MLX's bundled reference BLAS agree; `eden-mlx doctor` reports which one is in use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, run_cli

PROBE = """
import sys
sys.modules["torch"] = None  # mlx-lm's transformers import would load torch for nothing
import mlx_eden.backends.mlx  # preloads MKL unless EDEN_BLAS=reference
import mlx.core as mx
import numpy as np
from mlx_lm.utils import load_model
from mlx_eden.backends.mlx import blas

rng = np.random.default_rng(0)
a = mx.array(rng.standard_normal((96, 200), dtype=np.float32))
b = mx.array(rng.standard_normal((200, 72), dtype=np.float32))
model, _ = load_model(__import__("pathlib").Path(sys.argv[1]))
ids = mx.array(rng.integers(0, 500, (2, 24)).astype(np.int32))
np.savez(sys.argv[2], matmul=np.array(a @ b), logits=np.array(model(ids)))
print(blas.active_blas())
"""


def _probe(model_dir, out, blas_choice: str | None):
    env = {k: v for k, v in os.environ.items() if k != "EDEN_BLAS"}
    if blas_choice:
        env["EDEN_BLAS"] = blas_choice
    proc = subprocess.run([sys.executable, "-c", PROBE, str(model_dir), str(out)], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), np.load(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MKL preload is Linux-only")
def test_mkl_and_reference_blas_give_the_same_results(tmp_path, tiny_qwen2):
    fast, with_mkl = _probe(tiny_qwen2, tmp_path / "mkl.npz", None)
    slow, with_ref = _probe(tiny_qwen2, tmp_path / "ref.npz", "reference")
    if not fast.startswith("mkl"):
        pytest.skip(f"MKL is not installed here ({fast})")
    assert slow.startswith("reference")
    for key in ("matmul", "logits"):
        np.testing.assert_allclose(with_mkl[key], with_ref[key], rtol=1e-4, atol=1e-4)
    assert np.abs(with_mkl["logits"]).max() > 0.1  # a real forward, not zeros


def test_doctor_reports_blas_and_rates():
    proc = run_cli("doctor", "--json", check=True)
    facts = json.loads(proc.stdout)
    assert facts["mlx_matmul_gflops"] > 0 and facts["numpy_matmul_gflops"] > 0
    assert facts["blas"].split()[0] in ("mkl", "accelerate", "reference")
    assert {"mlx", "mlx-lm", "mlx-eden"} <= facts["versions"].keys()
    assert set(facts["extras"]) == {"torch", "peft", "llama-cpp-python", "gguf"}
    from mlx_eden.commands.doctor import _lines

    shown = dict(_lines(facts))
    assert facts["blas"] in shown["BLAS"] and "GFLOP/s" in shown["fp32 matmul"]
