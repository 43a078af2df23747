"""Data parallel on loopback: 1 rank vs 2 ranks, each backend, and the all-reduce itself.

    (1) training: the tiny model through the real CLI, 1 rank x micro-batch 4 against 2 ranks x
        micro-batch 2 (torchrun / mlx.launch; the same global batch, so the same steps):
        trained tokens per second over the steps after the first, and the wall time.
    (2) communication: the all-reduce payload per optimizer step (the adapter's float32
        gradients, from run.json) and what a ring all-reduce sends per rank, 2 (N-1)/N of it;
        and the time of one all-reduce of --payload-mb on loopback with each library (gloo,
        the MLX ring).

On 2 shared cores this measures mechanics (that the group forms, what it costs to
synchronise), not scaling: two ranks split the same two cores one rank had. The machine's load
average is recorded next to the figures. Scaling between machines follows from the payload and
the link's bandwidth (README "More than one machine").

    python benchmarks/distributed.py [--steps 12] [--payload-mb 16] [--backends torch,mlx]

Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "distributed.json"
WORK = ROOT / "benchmarks" / "work" / "distributed"
BIN = Path(sys.executable).parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(backend: str, ranks: int) -> list[str]:
    """The command prefix that starts `ranks` processes of `python -m ...`."""
    if ranks == 1:
        return [sys.executable, "-m"]
    if backend == "torch":
        return [str(BIN / "torchrun"), "--nproc-per-node", str(ranks), "--master-port",
                str(free_port()), "-m"]
    return [str(BIN / "mlx.launch"), "--hosts", ",".join(["127.0.0.1"] * ranks),
            "--starting-port", str(free_port()), "--", sys.executable, "-m"]


def train(backend: str, ranks: int, steps: int, model: Path) -> dict:
    """One run of the CLI; figures from its metrics.jsonl and run.json."""
    out = WORK / f"{backend}-{ranks}"
    shutil.rmtree(out, ignore_errors=True)
    sets = {"model.path": model, "model.dtype": "float32", "data.max_seq_length": 256,
            "data.packing": "false", "train.batch_size": 4 // ranks, "train.max_steps": steps,
            "train.eval_every": 0, "train.save_every": 0, "data.valid": "[]",
            "data.test": "[]", "train.num_threads": 1, "train.log_every": 1}
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    cmd = launcher(backend, ranks) + ["mlx_eden.cli", "train", str(ROOT / "recipes" /
                                      "tiny-demo.yaml"), *args, "--backend", backend,
                                      "--no-dashboard", "--output", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{backend} x{ranks} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps_ = [r for r in rows if r["event"] == "train"][1:]  # the first: warm-up, compilation
    info = json.loads((out / "run.json").read_text())
    trainable = info["model"]["trainable_params"]
    return {"backend": backend, "ranks": ranks, "micro_batch_per_rank": 4 // ranks,
            "steps": steps, "wall_s": round(wall, 2),
            "trained_tokens_per_s": sum(r["tokens"] for r in steps_)
            / sum(r["step_time"] for r in steps_),
            "mean_step_s": sum(r["step_time"] for r in steps_) / len(steps_),
            "final_loss": [r for r in rows if r["event"] == "train"][-1]["loss"],
            "trainable_params": trainable, "allreduce_payload_bytes": trainable * 4,
            "ring_bytes_sent_per_rank": int(2 * (ranks - 1) / ranks * trainable * 4),
            "distributed": info.get("distributed"), "load_avg_after": os.getloadavg()[0]}


def allreduce_worker(backend: str, payload_mb: float, repeats: int) -> None:
    """Inside a launched rank: time `repeats` all-reduces of payload_mb of float32."""
    n = int(payload_mb * 2**20 / 4)
    times = []
    if backend == "torch":
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        x = torch.ones(n)
        for _ in range(repeats + 1):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - t0)
        rank = dist.get_rank()
    else:
        import mlx.core as mx

        group = mx.distributed.init(strict=True, backend="ring")
        x = mx.ones((n,))
        mx.eval(x)
        for _ in range(repeats + 1):
            mx.eval(mx.distributed.all_sum(mx.array(1.0)))  # barrier
            t0 = time.perf_counter()
            mx.eval(mx.distributed.all_sum(x))
            times.append(time.perf_counter() - t0)
        rank = group.rank()
    if rank == 0:
        best = min(times[1:])
        print(json.dumps({"backend": backend, "payload_bytes": n * 4, "seconds_best": best,
                          "seconds_all": times[1:],
                          "algorithm_bandwidth_GBps": n * 4 / best / 1e9}))


def allreduce(backend: str, payload_mb: float, repeats: int) -> dict:
    cmd = launcher(backend, 2)
    cmd = cmd[:-1] if cmd[-1] == "-m" else cmd  # run this file, not a module
    cmd += [str(Path(__file__).resolve()), "--worker", backend, "--payload-mb",
            str(payload_mb), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ONE_THREAD})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"all-reduce {backend} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "load_avg_after": os.getloadavg()[0]}


def machine() -> dict:
    from mlx_eden.run.rundir import versions

    return {"platform": platform.platform(), "cores": os.cpu_count(), "versions": versions(),
            "load_avg_before": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--payload-mb", type=float, default=16.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="torch,mlx")
    ap.add_argument("--worker", choices=["torch", "mlx"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return allreduce_worker(a.worker, a.payload_mb, a.repeats)
    sys.path.insert(0, str(ROOT))
    from mlx_eden.tiny import TinySpec, write_tiny

    model = write_tiny(WORK / "tiny-qwen2", TinySpec())
    result = {"machine": machine(), "note": "2 shared cores: mechanics, not scaling",
              "training": [], "allreduce": []}
    for backend in a.backends.split(","):
        for ranks in (1, 2):
            row = train(backend, ranks, a.steps, model)
            print(json.dumps(row))
            result["training"].append(row)
        row = allreduce(backend, a.payload_mb, a.repeats)
        print(json.dumps(row))
        result["allreduce"].append(row)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
