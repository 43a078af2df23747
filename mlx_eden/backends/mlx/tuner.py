"""mlx-lm's tuner (LoRA/DoRA layers, adapter loading) without its trainer's optional imports.

Why: `mlx_lm.tuner.utils` runs `mlx_lm/tuner/__init__.py`, which imports mlx-lm's trainer and,
through its callbacks, wandb and swanlab when they are installed: wandb alone took 1.1 s of
start-up here (`python -X importtime`, 2-core Xeon), about a tenth of a one-epoch tiny-model run
on a quiet box. Those callbacks import them in `try/except ImportError`, and we never use mlx-lm's
trainer or callbacks, so both are hidden while the tuner loads; a later `import wandb` (our own
`output.report_to: wandb`) is untouched: the hiding entries are removed again.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

OPTIONAL = ("wandb", "swanlab")


@contextmanager
def _hidden(names):
    hide = [n for n in names if n not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # `import name` raises ImportError
    try:
        yield
    finally:
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def tuner_utils():
    """The `mlx_lm.tuner.utils` module (linear_to_lora_layers, load_adapters)."""
    with _hidden(OPTIONAL):
        from mlx_lm.tuner import utils
    return utils
