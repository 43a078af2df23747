"""What the live dashboard costs a training run: step time with the dashboard drawing vs the plain
log (`--no-dashboard`), measured in the SAME run on the tiny model, alternating blocks of steps.

The run happens in a pseudo-terminal this script reads (as a terminal emulator would), so Rich
draws real frames to a real tty. Within the one run, blocks of steps alternate between the
dashboard (Live started, redraw thread running) and the plain log (Live stopped): both modes see
the same compiled model, warm caches and machine noise. The figure is the ratio of wall time
per step (dashboard / plain), pooled and as the median over dashboard blocks of the ratio to
the plain blocks either side; the plain blocks are the anchor. The redraw thread's own CPU
time (inside Live.refresh) is measured too: its share of the dashboard blocks' wall time is the
cost without the noise of a shared machine.

    python benchmarks/dashboard_overhead.py [--steps 480] [--block 24]

Writes benchmarks/results/dashboard_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "dashboard_overhead.json"
SIZES = [(80, 24), (160, 48)]


class Alternating:
    """Listener: the dashboard always folds in events; its Live display runs in even blocks
    and is stopped in odd ones, where the plain log prints instead. Records the wall time and
    trained tokens of every step under the mode it ran in."""

    def __init__(self, block: int, log_every: int = 10):
        from rich.console import Console

        from mlx_eden.ui.dashboard import Dashboard
        from mlx_eden.ui.plainlog import PlainLog

        self.dashboard = Dashboard(Console())
        self.plain = PlainLog(log_every)
        self.block, self.previous, self.steps = block, None, []
        # CPU and wall time of redraws: by the redraw thread, and the first/last frames the
        # main thread draws when a block switches the display on or off
        self.redraws = {"thread": [0.0, 0.0, 0], "switch": [0.0, 0.0, 0]}
        refresh = self.dashboard.live.refresh

        def timed_refresh():
            cpu, wall = time.thread_time(), time.perf_counter()
            refresh()
            totals = self.redraws["thread" if threading.current_thread().name == "dashboard"
                                  else "switch"]
            totals[0] += time.thread_time() - cpu
            totals[1] += time.perf_counter() - wall
            totals[2] += 1

        self.dashboard.live.refresh = timed_refresh

    @property
    def live(self) -> bool:
        return self.dashboard.live.is_started

    def __call__(self, event) -> None:
        from mlx_eden.run.events import StartEvent, StepEvent, StopEvent

        mode = "dashboard" if self.live else "plain"
        if isinstance(event, StopEvent):
            self.dashboard.close()
            return self.plain(event)
        self.dashboard.update(event)
        if isinstance(event, StartEvent):
            self.dashboard.start()
        elif isinstance(event, StepEvent):
            if self.previous is not None:
                self.steps.append({"step": event.step, "mode": mode, "tokens": event.tokens,
                                   "wall": event.elapsed - self.previous})
            self.previous = event.elapsed
            if event.step % self.block == 0:  # switch modes
                if self.live:
                    self.dashboard.close()
                else:
                    self.dashboard.start()
        if not self.live:
            self.plain(event)


def worker(out: Path, steps: int, block: int) -> None:
    """Runs inside the pty: a real run_training on a freshly built tiny model."""
    import mlx_eden.backends.mlx  # noqa: F401  (MKL before mlx.core)
    from mlx_eden.recipe import load_recipe
    from mlx_eden.run.train import run_training
    from mlx_eden.tiny import TinySpec, write_tiny

    os.chdir(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    model = write_tiny(tmp / "tiny", TinySpec())
    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml", [
        f"model.path={model}", "data.max_seq_length=128", "train.batch_size=2",
        f"train.max_steps={steps}", "train.eval_every=0", "train.eval_batches=1",
        "train.save_every=0", "train.warmup_steps=5"])
    listener = Alternating(block)
    stop = run_training(recipe, output=str(tmp / "run"), listeners=[listener], backend="mlx")
    dash_wall = sum(s["wall"] for s in listener.steps if s["mode"] == "dashboard")
    out.write_text(json.dumps({"status": stop.status, "steps": listener.steps,
                               "redraws": listener.redraws, "dashboard_wall": dash_wall}))


def run_in_pty(size: tuple[int, int], steps: int, block: int) -> dict:
    """Starts the worker with a pty of `size` as its terminal and drains what it draws."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, __file__, "--worker", str(out),
                                   "--steps", str(steps), "--block", str(block)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    drawn = 0
    while True:
        if select.select([fd], [], [], 1.0)[0]:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            drawn += len(chunk)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    if os.waitstatus_to_exitcode(status) != 0 or out.stat().st_size == 0:
        raise SystemExit(f"the worker failed (exit {os.waitstatus_to_exitcode(status)})")
    data = json.loads(out.read_text())
    out.unlink()
    data["bytes_drawn"] = drawn
    return data


def summarise(data: dict, block: int, warmup: int = 10) -> dict:
    """Wall time per step by mode (every step has the same padded shape, so per step is the
    fair unit), leaving out the warm-up (compilation) and the first step after each switch.
    Each dashboard block is compared with the mean of the plain blocks on either side, which
    cancels a machine whose load drifts during the run."""
    steps = [s for s in data["steps"] if s["step"] > warmup and (s["step"] - 1) % block != 0]
    blocks: dict[int, dict] = {}
    for s in steps:
        b = blocks.setdefault((s["step"] - 1) // block, {"mode": s["mode"], "walls": []})
        b["walls"].append(s["wall"])
    means = {k: (b["mode"], statistics.fmean(b["walls"])) for k, b in blocks.items()}
    ratios = [wall / ((means[k - 1][1] + means[k + 1][1]) / 2)
              for k, (mode, wall) in means.items()
              if mode == "dashboard" and means.get(k - 1, ("",))[0] == "plain"
              and means.get(k + 1, ("",))[0] == "plain"]
    modes = {mode: [s["wall"] for s in steps if s["mode"] == mode]
             for mode in ("dashboard", "plain")}
    thread_cpu, thread_wall, thread_frames = data["redraws"]["thread"]
    switch_cpu, _, switch_frames = data["redraws"]["switch"]
    return {
        "steps": {mode: len(walls) for mode, walls in modes.items()},
        "mean_step_s": {mode: statistics.fmean(walls) for mode, walls in modes.items()},
        "ratio_pooled": statistics.fmean(modes["dashboard"]) / statistics.fmean(modes["plain"]),
        "ratio_median_of_blocks_vs_neighbours": statistics.median(ratios) if ratios else None,
        "block_ratio_quartiles": statistics.quantiles(ratios, n=4) if len(ratios) > 2 else None,
        "block_ratios": ratios,
        "redraw_thread": {"frames": thread_frames,
                          "cpu_ms_per_frame": 1e3 * thread_cpu / max(thread_frames, 1),
                          "wall_ms_per_frame": 1e3 * thread_wall / max(thread_frames, 1),
                          "cpu_share_of_dashboard_wall": thread_cpu / data["dashboard_wall"]},
        "switch_frames": {"frames": switch_frames,
                          "cpu_ms_per_frame": 1e3 * switch_cpu / max(switch_frames, 1)},
        "bytes_drawn": data["bytes_drawn"],
    }


def machine() -> dict:
    from importlib import metadata

    versions = {}
    for pkg in ("mlx", "mlx-lm", "rich"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "versions": versions,
            "load_average_at_start": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=480)
    parser.add_argument("--block", type=int, default=24)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.block)
    result = {"benchmark": "dashboard_overhead", "machine": machine(),
              "config": {"steps": args.steps, "block": args.block, "max_fps": 4,
                         "cpu_budget": 0.005,
                         "model": "tiny-qwen2 (hidden 256, 2 layers), seq 128, batch 2",
                         "anchor": "plain-log blocks of the same run"},
              "runs": {}}
    for width, height in SIZES:
        data = run_in_pty((width, height), args.steps, args.block)
        result["runs"][f"{width}x{height}"] = summarise(data, args.block)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'terminal':>9} {'plain s/step':>12} {'dash s/step':>11} {'pooled':>7} "
          f"{'median block':>12} {'redraw CPU':>10} {'CPU ms/frame':>12} {'frames':>6}")
    for size, r in result["runs"].items():
        median, thread = r["ratio_median_of_blocks_vs_neighbours"], r["redraw_thread"]
        print(f"{size:>9} {r['mean_step_s']['plain']:12.3f} {r['mean_step_s']['dashboard']:11.3f} "
              f"{r['ratio_pooled']:7.4f} {'—' if median is None else f'{median:.4f}':>12} "
              f"{100 * thread['cpu_share_of_dashboard_wall']:9.2f}% "
              f"{thread['cpu_ms_per_frame']:12.2f} {thread['frames']:6d}")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
