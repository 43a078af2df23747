"""data/hf_import.py serves transformers' model-folder scan from a cache file: the same module
tables, the same tokenizer class and token ids as transformers' own import, with the second scan
gone (first run) and both gone (next runs). Each side runs in a fresh interpreter (the module is built once per process), with one
hash seed so the tables' set orders agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
sys.modules["torch"] = None  # as eden-mlx does on the MLX path
mode, dirs = sys.argv[1], sys.argv[2:]
if mode == "eden":
    from mlx_eden.data.render import load_tokenizer
else:
    from transformers import AutoTokenizer
    load_tokenizer = AutoTokenizer.from_pretrained
toks = [load_tokenizer(d) for d in dirs]
from transformers.utils import import_utils
models = sys.modules["transformers.models"]
scan = import_utils.create_import_structure_from_path
chat = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "안녕하세요, what is 2+2?"},
        {"role": "assistant", "content": "4. 사"},
        {"role": "user", "content": "And <think>x</think>?"},
        {"role": "assistant", "content": "Still 4."}]
print(json.dumps({
    "scanned": scan.cache_info().misses,  # folders scanned; transformers' own function again
    "hooks": [type(f).__name__ for f in sys.meta_path],
    "tables": {name: sorted(map(str, getattr(models, name))) if isinstance(getattr(models, name), (set, list))
               else sorted((k, str(sorted(v) if isinstance(v, (set, list)) else v))
                           for k, v in getattr(models, name).items())
               for name in ("__all__", "_modules", "_class_to_module", "_object_missing_backend")},
    "import_structure": sorted((k, sorted(v)) for k, v in models._import_structure.items()),
    "file": models.__file__, "path": models.__path__, "spec": models.__spec__.origin,
    "tokenizers": [{
        "class": f"{type(t).__module__}.{type(t).__qualname__}",
        "ids": t.apply_chat_template(chat, tokenize=True, return_dict=False),
        "text": t.apply_chat_template(chat, tokenize=False),
        "prompt": t.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True),
        "encode": t("안녕 hello <|im_end|> world", add_special_tokens=False)["input_ids"],
        "special": [t.eos_token, t.pad_token, t.bos_token]} for t in toks],
}))
"""


def _probe(mode: str, dirs: list, cache) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
           "XDG_CACHE_HOME": str(cache)}
    out = subprocess.run([sys.executable, "-c", PROBE, mode, *map(str, dirs)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def tokenizer_dirs(tiny_qwen2, tiny_qwen3, request) -> list:
    """The tests' tiny tokenizers, plus Qwen's real ones when they are cached (npm)."""
    dirs = [tiny_qwen2, tiny_qwen3]
    for name in ("tiny_real_qwen25", "tiny_real_qwen3"):
        try:
            dirs.append(request.getfixturevalue(name))
        except pytest.skip.Exception:
            pass
    return dirs


def test_same_module_tokenizers_and_ids_with_one_scan_then_none(tokenizer_dirs, tmp_path):
    cold = _probe("eden", tokenizer_dirs, tmp_path)
    (cached,) = (tmp_path / "mlx-eden").glob("transformers-models-*.pickle")
    plain = _probe("transformers", tokenizer_dirs, tmp_path)
    warm = _probe("eden", tokenizer_dirs[:1], tmp_path)  # the real tokenizers: once is enough
    for eden in (cold, warm):
        assert eden["tokenizers"] == plain["tokenizers"][:len(eden["tokenizers"])]
        for key in ("tables", "import_structure", "file", "path", "spec"):
            assert eden[key] == plain[key], key
        assert "_ScanCache" not in eden["hooks"]
    assert all(t["class"].startswith("transformers.models.qwen2.") for t in cold["tokenizers"])
    # transformers scans its ~560 model folders twice on its own, once on a cold cache, and
    # not at all from the cache file (what is left: the few packages imported, one folder each).
    assert cold["scanned"] < 0.6 * plain["scanned"], (cold["scanned"], plain["scanned"])
    assert warm["scanned"] < 0.02 * plain["scanned"], (warm["scanned"], plain["scanned"])
    assert cached.stat().st_size > 10_000
    cached.write_bytes(b"cut")  # a damaged cache file: scanned again and rewritten
    again = _probe("eden", tokenizer_dirs[:1], tmp_path)
    assert again["tables"] == plain["tables"] and again["scanned"] > 0.4 * plain["scanned"]
    assert cached.stat().st_size > 10_000


def test_fingerprint_follows_every_file(tmp_path):
    from mlx_eden.data.hf_import import fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("__all__ = ['X']\n")
    before = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == before
    (tmp_path / "a" / "x.py").write_text("__all__ = ['X', 'Y']\n")  # edited in place
    edited = fingerprint(tmp_path)
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "a" / "b" / "y.py").write_text("")  # a new file in a new folder
    added = fingerprint(tmp_path)
    assert len({before, edited, added}) == 3
    os.utime(tmp_path / "a" / "x.py", ns=(1, 1))  # same content, another mtime
    assert fingerprint(tmp_path) not in {before, edited, added}
