"""`eden-mlx train --backend torch` through the real CLI: loss falls, the run directory has the
MLX run's layout (plus the PEFT copy), resume after SIGKILL is exact, and the adapter loads in
mlx-lm and in peft to the same logits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlx_eden.adapters import PEFT_DIR

from .conftest import EDEN, ROOT, needs_torch, run_cli

pytestmark = [needs_torch, pytest.mark.torch, pytest.mark.slow]

DEMO = ROOT / "recipes" / "tiny-demo.yaml"
# One BLAS/OpenMP thread per process: on a small shared box, spin-waiting threads of concurrent
# processes slow each other down many times over (measured: 3 s vs 43 s for 20 MLX steps).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def sets(model, **kw) -> list[str]:
    base = {"model.path": model, "data.max_seq_length": 128, "train.batch_size": 2,
            "train.max_steps": 12, "train.save_every": 4, "train.eval_every": 4,
            "train.eval_batches": 2, "train.keep_checkpoints": 2, "adapter.dropout": 0.1,
            "model.dtype": "float32", "train.num_threads": 1, "train.log_every": 1}
    base.update(kw)
    return [x for k, v in base.items() for x in ("--set", f"{k}={v}")]


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def layout(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


def adapter_arrays(directory: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(directory / "adapters.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_qwen2) -> Path:
    root = tmp_path_factory.mktemp("torch-cli")
    for backend in ("torch", "mlx"):
        run_cli("train", DEMO, *sets(tiny_qwen2), "--backend", backend, "--no-dashboard",
                "--output", root / backend, check=True, env=ONE_THREAD)
    return root


def test_trains_through_the_cli_and_records_the_backend(runs):
    run = runs / "torch"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["backend"] == "torch"
    assert info["backend_reason"] == "requested by the recipe or --backend"
    assert "torch" in info["device"] and info["model"]["extra"]["threads"] == 1
    start = events(run, "start")[0]
    assert start["backend"] == "torch" and start["backend_reason"] == info["backend_reason"]
    assert [e["step"] for e in events(run, "train")] == list(range(1, 13))
    val = [e["val_loss"] for e in events(run, "eval")]
    assert len(val) == 3 and val[-1] < val[0] - 0.05
    mlx_val = [e["val_loss"] for e in events(runs / "mlx", "eval")]
    np.testing.assert_allclose(val, mlx_val, atol=0.02)  # dropout masks differ, little else


def test_run_directory_matches_the_mlx_layout(runs):
    torch_files, mlx_files = layout(runs / "torch"), layout(runs / "mlx")
    mlx_files.discard("memory.jsonl")  # the unified-memory profiler's: MLX runs only
    peft = {f for f in torch_files if f"/{PEFT_DIR}" in f or f.startswith(PEFT_DIR)}
    assert torch_files - peft == mlx_files
    for folder in ("adapter", "best", *sorted(f for f in mlx_files if f.count("/") == 1
                                              and f.startswith("checkpoints/"))):
        assert {f"{folder}/{PEFT_DIR}/adapter_model.safetensors",
                f"{folder}/{PEFT_DIR}/adapter_config.json"} <= peft, folder
    cfg = json.loads((runs / "torch" / "adapter" / "adapter_config.json").read_text())
    assert cfg == json.loads((runs / "mlx" / "adapter" / "adapter_config.json").read_text())
    a, b = adapter_arrays(runs / "torch" / "adapter"), adapter_arrays(runs / "mlx" / "adapter")
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 300) -> bool:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and '"what": "checkpoint"' in metrics.read_text():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.skipif(sys.platform == "darwin", reason="auto picks mlx on Apple Silicon")
def test_resume_after_sigkill_is_exact(runs, tiny_qwen2, tmp_path):
    """Killed after its first checkpoint and resumed, the run (backend: auto, which resolves
    to torch here) repeats the uninterrupted one's losses and final adapter."""
    killed = tmp_path / "killed"
    cmd = EDEN + ["train", str(DEMO), *sets(tiny_qwen2), "--no-dashboard", "--output",
                  str(killed)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **ONE_THREAD})
    assert _wait_for_checkpoint(killed, proc), proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(e["step"] for e in events(killed, "train")) < 12  # really cut short
    assert json.loads((killed / "run.json").read_text())["backend_reason"].startswith("auto")

    run_cli("train", DEMO, *sets(tiny_qwen2), "--no-dashboard", "--output", killed, "--resume",
            check=True, env=ONE_THREAD)
    full = runs / "torch"
    a, b = events(full, "train"), events(killed, "train")
    assert [e["step"] for e in b] == list(range(1, 13))
    deltas = np.abs(np.array([e["loss"] for e in b]) - [e["loss"] for e in a])
    print("resume max |dloss|", deltas.max())
    assert deltas.max() <= 1e-5
    assert [e["lr"] for e in b] == [e["lr"] for e in a]
    wa, wb = adapter_arrays(full / "adapter"), adapter_arrays(killed / "adapter")
    assert wa.keys() == wb.keys()
    worst = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    print("resume final adapter max |d|", worst)
    assert worst <= 1e-5


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/peft deprecations
def test_adapter_loads_in_mlx_lm_and_peft_to_the_same_logits(runs, tiny_qwen2):
    import mlx.core as mx
    import torch
    from mlx_lm import load
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = runs / "torch"
    ids = list(range(5, 60))
    model, _ = load(str(tiny_qwen2), adapter_path=str(run / "adapter"))
    ours = np.array(model(mx.array([ids])).astype(mx.float32))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2), dtype=torch.float32)
    with torch.no_grad():
        plain = base(torch.tensor([ids])).logits.numpy()
        peft_model = PeftModel.from_pretrained(base, str(run / "adapter" / PEFT_DIR))
        theirs = peft_model(torch.tensor([ids])).logits.numpy()
    assert np.abs(theirs - plain).max() > 1e-2  # the adapter really changes the output
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_peft_copy_equals_export_peft_of_the_mlx_format(runs, tmp_path):
    """Two independent writers of the PEFT format agree: peft's own save_pretrained (the torch
    backend's adapter/peft) and `eden-mlx export peft` of the mlx-format adapter."""
    from safetensors.numpy import load_file

    from mlx_eden.export.peft import PEFT_CONFIG, PEFT_WEIGHTS, export_peft

    adapter = runs / "torch" / "adapter"
    config = export_peft(adapter, tmp_path / "peft")
    ours = json.loads((adapter / PEFT_DIR / PEFT_CONFIG).read_text())
    for key in ("r", "lora_alpha", "use_rslora", "use_dora", "layers_to_transform"):
        assert ours[key] == config[key], key
    assert sorted(ours["target_modules"]) == sorted(config["target_modules"])
    a = load_file(str(adapter / PEFT_DIR / PEFT_WEIGHTS))
    b = load_file(str(tmp_path / "peft" / PEFT_WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
