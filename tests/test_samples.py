"""data/make_samples.py regenerates the committed sample data and the frozen tokenizer corpus.

Run in a copy of `data/`, so a failure never touches the clone. The corpus check fails if the
script reads every folder again (raw/ holds deliberately malformed lines, and the folders added
after the foundation would add lines the tiny tokenizer never saw).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from .conftest import ROOT


def test_make_samples_reproduces_committed_files(tmp_path):
    shutil.copytree(ROOT / "data", tmp_path / "data")
    (tmp_path / "mlx_eden" / "assets").mkdir(parents=True)
    done = subprocess.run([sys.executable, "data/make_samples.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for path in sorted((ROOT / "data" / "samples").glob("*/*.jsonl")):
        rel = path.relative_to(ROOT)
        assert (tmp_path / rel).read_bytes() == path.read_bytes(), rel
    corpus = "mlx_eden/assets/tokenizer_corpus.txt"
    assert (tmp_path / corpus).read_bytes() == (ROOT / corpus).read_bytes()
