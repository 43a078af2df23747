"""Freed host memory stays in the heap on Linux (backends/mlx/heap.py): a step that frees its
activations and allocates them again does not fault every page in afresh. EDEN_HEAP=system keeps
glibc's defaults, which is the comparison (and the mutation: without the mallopt calls both
processes fault alike)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT

# Three "steps" of 10 live MLX arrays of ~4 MiB freed together, each step's a little wider than
# the last (as batch widths vary): with glibc's defaults each new size is above the dynamic mmap
# threshold the previous step's frees raised it to, so every array is mapped and faulted afresh.
PROBE = """
import resource, sys
sys.modules["torch"] = None
import mlx_eden.backends.mlx  # sets the heap thresholds unless EDEN_HEAP=system
import mlx.core as mx
from mlx_eden.backends.mlx import heap

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

counts = []
for step in range(3):
    before = faults()
    live = [mx.full((1024 * (1024 + 16 * step),), float(i + step)) for i in range(10)]
    mx.eval(live)
    assert sum(a.sum().item() for a in live) > 0
    del live
    counts.append(faults() - before)
print(heap.keep_freed_memory(), counts[-1])
"""


def _last_step_faults(heap_choice: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "EDEN_HEAP"}
    if heap_choice:
        env["EDEN_HEAP"] = heap_choice
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    applied, faults = proc.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_activations_are_reused_without_page_faults():
    pages = 10 * 4 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    applied, kept = _last_step_faults(None)
    default, returned = _last_step_faults("system")
    assert (applied, default) == ("True", "False")
    assert returned > pages * 3 // 4  # glibc's defaults: every page mapped afresh
    assert kept < pages // 4, (kept, returned)  # measured: ~1,200 (the growth) vs ~10,500
