"""Only backends/mlx imports mlx and only backends/torch imports torch: everything else must
import (and work) with both blocked."""

import subprocess
import sys

NEUTRAL = ["mlx_eden.cli", "mlx_eden.recipe", "mlx_eden.errors", "mlx_eden.safeio", "mlx_eden.tiny",
           "mlx_eden.adapters", "mlx_eden.hub", "mlx_eden.data.formats", "mlx_eden.data.render",
           "mlx_eden.data.batching", "mlx_eden.data.splits", "mlx_eden.run.loop",
           "mlx_eden.run.events", "mlx_eden.run.rundir", "mlx_eden.run.schedule",
           "mlx_eden.run.train", "mlx_eden.ui.plainlog", "mlx_eden.ui.datacheck",
           "mlx_eden.backends.base", "mlx_eden.commands.train", "mlx_eden.commands.recipe",
           "mlx_eden.commands.data", "mlx_eden.commands.tiny", "mlx_eden.commands.eval",
           "mlx_eden.eval.metrics", "mlx_eden.eval.run",
           "mlx_eden.export.files", "mlx_eden.export.probe", "mlx_eden.export.fuse",
           "mlx_eden.export.gguf", "mlx_eden.export.quantize", "mlx_eden.export.to_gguf",
           "mlx_eden.export.gguf_lora", "mlx_eden.export.adapter_io", "mlx_eden.export.peft",
           "mlx_eden.export.readback", "mlx_eden.export.llamacpp", "mlx_eden.export.verify",
           "mlx_eden.export.ollama", "mlx_eden.commands.fuse", "mlx_eden.commands.export",
           "mlx_eden.commands.importers",
           "mlx_eden.ui.dashboard", "mlx_eden.ui.panels", "mlx_eden.ui.runstate",
           "mlx_eden.ui.textchart", "mlx_eden.ui.svg", "mlx_eden.ui.rundata",
           "mlx_eden.ui.report", "mlx_eden.commands.report", "mlx_eden.commands.doctor",
           "mlx_eden.memory.shapes", "mlx_eden.memory.devices", "mlx_eden.memory.activations",
           "mlx_eden.memory.planner", "mlx_eden.memory.fit", "mlx_eden.memory.profiler",
           "mlx_eden.memory.measure", "mlx_eden.memory.session", "mlx_eden.memory.report",
           "mlx_eden.memory.compare", "mlx_eden.memory.preflight", "mlx_eden.commands.plan",
           "mlx_eden.commands.profile"]

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mlx', 'mlx_lm', 'torch'):
            raise ImportError(f'blocked import of {name}')
sys.meta_path.insert(0, Block())
import importlib
for m in MODULES:
    importlib.import_module(m)
from mlx_eden.recipe import load_recipe
load_recipe('recipes/tiny-demo.yaml')
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'torch'))
assert not leaked, leaked
print('ok')
"""


def test_neutral_modules_import_without_mlx_or_torch():
    from .conftest import ROOT

    code = f"MODULES = {NEUTRAL!r}\n" + BLOCKER
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
