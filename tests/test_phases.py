"""Where a run's wall time goes (run/phases.py): the clock itself, the report's row, and mlx-lm's
tuner loading without wandb (1.1 s of start-up)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

from rich.console import Console

from mlx_eden.run.phases import ORDER, Phases, describe, process_started
from mlx_eden.ui.report import make_report

from .test_report import write_run


def test_phases_add_up_to_the_time_since_process_start():
    # A fresh child, not pytest's own process: a slow suite reaches this test minutes after
    # pytest started (a 755-test run under load took 13 minutes).
    code = ("import time; from mlx_eden.run.phases import process_started; "
            "print(time.time() - process_started())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout)
    assert 0 <= age < 60  # the child's own start: not boot, not the epoch
    assert process_started() <= time.time()
    phases = Phases(started=time.time() - 2.0)
    with phases.time("eval"):
        time.sleep(0.05)
    time.sleep(0.05)  # unclaimed: "other"
    phases.add("first_step", 0.01)
    phases.add("first_step", 0.015)
    out = phases.to_dict()
    assert list(out) == ["startup", "first_step", "eval", "other", "total"]  # ORDER, then sums
    assert 1.99 <= out["startup"] <= 2.1 and out["first_step"] == 0.025
    assert 0.02 <= out["other"] < 0.5
    assert 0.05 <= out["eval"] < 0.5
    assert abs(out["total"] - sum(v for k, v in out.items() if k != "total")) < 0.01
    assert describe({"startup": 1.234, "total": 9.0}) == "startup=1.2s total=9.0s"
    assert ORDER[0] == "startup" and "best_adapter" in ORDER


def test_the_report_shows_the_phases(tmp_path):
    run = write_run(tmp_path / "a")
    info = json.loads((run / "run.json").read_text())
    info["phases"] = {"startup": 1.25, "first_step": 2.5, "total": 10.0}
    (run / "run.json").write_text(json.dumps(info))
    page = make_report([str(run)], console=Console(file=io.StringIO())).read_text()
    assert "<th>wall time</th>" in page and "first_step 2.5 s" in page and "total 10.0 s" in page


def test_mlx_lm_tuner_loads_without_wandb_and_leaves_it_importable():
    # No `sys.modules["wandb"]` entry afterwards, not even the None that hid it: a later
    # `import wandb` (output.report_to: wandb) finds the real package.
    code = ("import sys; from mlx_eden.backends.mlx.tuner import tuner_utils; "
            "u = tuner_utils(); assert u.linear_to_lora_layers; "
            "print('wandb' in sys.modules, 'mlx_lm.tuner.trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
