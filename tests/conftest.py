"""Session fixtures: tiny models are built once per test session in a temp dir."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Point MLX at the fast BLAS before anything imports mlx.core (see backends/mlx/blas.py).
import mlx_eden.backends.mlx  # noqa: F401,E402
from mlx_eden.tiny import TinySpec, write_tiny

from .export_fixtures import *  # noqa: E402,F401,F403  (adapters and fused models, export tests)
from .qwen_fixtures import *  # noqa: E402,F401,F403  (real Qwen tokenizers, fetched with npm)

# A skip for an installed extra fails the session (CI notices a torch that stopped importing).
from .skip_guard import (  # noqa: E402,F401
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
EDEN = [sys.executable, "-m", "mlx_eden.cli"]

has_torch = importlib.util.find_spec("torch") is not None and \
    importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not has_torch, reason="needs the torch extra")


def run_cli(*args, cwd=None, check=False, timeout=600, env=None):
    """Run `eden-mlx ARGS` in a subprocess; return the CompletedProcess."""
    proc = subprocess.run(EDEN + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"eden-mlx {' '.join(map(str, args))} failed "
                             f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_qwen2(models_dir) -> Path:
    return write_tiny(models_dir / "tiny-qwen2", TinySpec())


@pytest.fixture(scope="session")
def tiny_qwen3(models_dir) -> Path:
    return write_tiny(models_dir / "tiny-qwen3", TinySpec(arch="qwen3", tied=False, seed=1))


# MLX's quantized matmul is ~40x slower than float on the CPU (fast on Metal), so QLoRA tests
# use a narrower model than the float ones.
SMALL = TinySpec(hidden=128, intermediate=256, heads=2, kv_heads=1)


@pytest.fixture(scope="session")
def tiny_small(models_dir) -> Path:
    return write_tiny(models_dir / "tiny-small", SMALL)


@pytest.fixture(scope="session")
def tiny_small_4bit(models_dir) -> Path:
    from mlx_eden.tiny import write_quantized

    return write_quantized(models_dir / "tiny-small-4bit", SMALL, bits=4, group_size=64)


@pytest.fixture(scope="session")
def tiny_qwen2_4bit(models_dir) -> Path:
    """The default tiny model, quantized (same shapes as tiny_qwen2: its adapters fit)."""
    from mlx_eden.tiny import write_quantized

    return write_quantized(models_dir / "tiny-qwen2-4bit", TinySpec(), bits=4, group_size=64)


# Like Qwen's checkpoints, embedding rows past the tokenizer's ids: room for tokens.add.
SPARE = TinySpec(spare=64)


@pytest.fixture(scope="session")
def tiny_spare(models_dir) -> Path:
    return write_tiny(models_dir / "tiny-spare", SPARE)


@pytest.fixture(scope="session")
def tiny_spare_untied(models_dir) -> Path:
    return write_tiny(models_dir / "tiny-spare-untied", TinySpec(arch="qwen3", tied=False,
                                                                 spare=64, seed=1))


@pytest.fixture(scope="session")
def tokenizer(tiny_qwen2):
    from mlx_eden.data.render import load_tokenizer

    return load_tokenizer(tiny_qwen2)
