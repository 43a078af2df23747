"""Data parallel on loopback, 2 ranks, each backend, through the real CLI and launchers.

Per backend one scenario does it all: a 1-rank run with micro-batch 4 is the reference; a
2-rank run with micro-batch 2 (the same global batch) has one rank stopped after its first
checkpoint; the other must exit non-zero with one line within 60 s and leave that checkpoint
intact; the 2-rank run resumed through the launcher (torchrun / mlx.launch) then finishes.
Every step's loss, the validation losses and the final adapter must equal the reference's to
1e-5: the steps before the stop show the sharded batches and all-rank sums, those after it that
the resume continues exactly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import EDEN, ROOT, needs_torch, run_cli

pytestmark = [pytest.mark.slow]

DEMO = ROOT / "recipes" / "tiny-demo.yaml"
BIN = Path(sys.executable).parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STEPS = 9


def sets(model, batch: int) -> list[str]:
    base = {"model.path": model, "data.max_seq_length": 96, "data.packing": "false",
            "train.batch_size": batch, "train.max_steps": STEPS, "train.save_every": 3,
            "train.eval_every": 3, "train.eval_batches": 1, "train.num_threads": 1,
            "train.log_every": 1, "model.dtype": "float32", "train.distributed_timeout": 10}
    return [x for k, v in base.items() for x in ("--set", f"{k}={v}")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def adapter(directory: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(directory / "adapters.safetensors"))


def rank_env(backend: str, rank: int, tmp: Path, port: int) -> dict:
    """What torchrun / mlx.launch put in a rank's environment (started by hand here, so no
    launcher's agent stops the survivor for us: the survivor must notice on its own)."""
    if backend == "torch":
        return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    hostfile = tmp / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]]))
    return {"MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)}


def launcher(backend: str, port: int) -> list[str]:
    if backend == "torch":
        return [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", str(port),
                "-m", "mlx_eden.cli"]
    return [str(BIN / "mlx.launch"), "--hosts", "127.0.0.1,127.0.0.1", "--starting-port",
            str(port), "--", sys.executable, "-m", "mlx_eden.cli"]


def wait_for_checkpoint(run: Path, procs, timeout: float = 300) -> bool:
    end = time.time() + timeout
    while time.time() < end and all(p.poll() is None for p in procs):
        metrics = run / "metrics.jsonl"
        if metrics.exists() and '"what": "checkpoint"' in metrics.read_text():
            return True
        time.sleep(0.02)
    return False


def stop_one_rank(backend: str, model: Path, run: Path, tmp: Path, how: int) -> dict:
    """Start 2 ranks by hand, stop rank 1 with `how` after the first checkpoint; report how
    rank 0 ended."""
    port = free_port()
    args = EDEN + ["train", str(DEMO), *sets(model, 2), "--backend", backend, "--no-dashboard",
                   "--output", str(run)]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **ONE_THREAD,
                                              **rank_env(backend, r, tmp, port)})
             for r in (0, 1)]
    try:
        assert wait_for_checkpoint(run, procs), procs[0].stderr.read()
        procs[1].send_signal(how)
        stopped = time.monotonic()
        code = procs[0].wait(timeout=90)
        return {"code": code, "seconds": time.monotonic() - stopped,
                "stderr": procs[0].stderr.read()}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def scenario(backend: str, model: Path, tmp: Path, how: int) -> None:
    one = tmp / "one"
    run_cli("train", DEMO, *sets(model, 4), "--backend", backend, "--no-dashboard", "--output",
            one, check=True, env=ONE_THREAD)
    two = tmp / "two"
    ended = stop_one_rank(backend, model, two, tmp, how)
    lines = ended["stderr"].strip().splitlines()
    print(backend, "survivor:", ended["code"], f"{ended['seconds']:.1f} s", lines[-1:])
    assert ended["code"] != 0 and ended["seconds"] < 60
    assert lines and lines[-1].startswith("error:") and "Traceback" not in ended["stderr"]
    assert "another rank" in lines[-1] or "no answer" in lines[-1]
    cut = max(e["step"] for e in events(two, "train"))
    assert cut < STEPS  # really cut short
    checkpoints = sorted((two / "checkpoints").glob("step-*"))
    assert checkpoints, "the first checkpoint was published"
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    assert adapter(checkpoints[-1]).keys() == adapter(one / "adapter").keys()  # loads whole

    proc = subprocess.run(launcher(backend, free_port()) + [
        "train", str(DEMO), *sets(model, 2), "--backend", backend, "--no-dashboard",
        "--output", str(two), "--resume"], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, **ONE_THREAD})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    info = json.loads((two / "run.json").read_text())
    assert info["distributed"]["world_size"] == 2 and len(info["distributed"]["hosts"]) == 2
    assert info["resumed_from"].endswith(f"step-{state['step']:07d}")

    a, b = events(one, "train"), events(two, "train")
    assert [e["step"] for e in b] == list(range(1, STEPS + 1))
    dloss = np.abs(np.array([e["loss"] for e in a]) - [e["loss"] for e in b]).max()
    dval = max(abs(x["val_loss"] - y["val_loss"])
               for x, y in zip(events(one, "eval"), events(two, "eval"), strict=True))
    wa, wb = adapter(one / "adapter"), adapter(two / "adapter")
    worst = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    print(backend, "2 ranks vs 1: max |dloss|", dloss, "|dval|", dval, "adapter", worst)
    assert dloss <= 1e-5 and dval <= 1e-5 and worst <= 1e-5
    assert sum(e["tokens"] for e in a) == sum(e["tokens"] for e in b)  # all-rank token counts


@needs_torch
@pytest.mark.torch
def test_torch_two_ranks_equal_one_rank_with_double_batch(tiny_qwen2, tmp_path):
    """torchrun/gloo: a killed rank stops the other (gloo sees the closed connection)."""
    scenario("torch", tiny_qwen2, tmp_path, signal.SIGKILL)


def test_mlx_two_ranks_equal_one_rank_with_double_batch(tiny_qwen2, tmp_path):
    """mlx.launch/ring: a rank that hangs (SIGSTOP: its sockets stay open, nothing answers)
    stops the other after train.distributed_timeout (the watchdog)."""
    scenario("mlx", tiny_qwen2, tmp_path, signal.SIGSTOP)


# ----------------------------------------------------------------------------- no processes


def test_shards_are_the_global_batch_in_order():
    from mlx_eden.backends.base import World
    from mlx_eden.data.batching import Batch
    from mlx_eden.run.world import shard

    ids = np.arange(5 * 3).reshape(5, 3)
    batch = Batch(ids, ids + 1, np.ones((5, 3), np.float32), np.ones((5, 3), np.int32), False)
    parts = [shard(batch, World(r, 2)) for r in (0, 1)]
    assert [p.shape[0] for p in parts] == [3, 2]
    assert np.array_equal(np.concatenate([p.inputs for p in parts]), ids)
    assert sum(p.trained_tokens for p in parts) == batch.trained_tokens
    short = [shard(Batch(ids[:2], ids[:2], batch.mask[:2], batch.segments[:2], False),
                   World(r, 3)).shape[0] for r in range(3)]
    assert short == [1, 1, 0]  # a short last batch leaves a rank an empty share


def test_the_launcher_in_the_environment_decides_the_backend(monkeypatch, tmp_path):
    from mlx_eden.backends.base import choose_backend, detect_world
    from mlx_eden.errors import UserError

    hostfile = tmp_path / "hosts.json"
    hostfile.write_text('[["10.0.0.1:5000"], ["10.0.0.2:5000"]]')
    monkeypatch.setenv("MLX_RANK", "1")
    monkeypatch.setenv("MLX_HOSTFILE", str(hostfile))
    world = detect_world()
    assert (world.rank, world.size, world.launcher, world.owner) == (1, 2, "mlx.launch", False)
    assert world.hosts == ("10.0.0.1:5000", "10.0.0.2:5000")
    assert choose_backend("auto")[0] == "mlx"
    with pytest.raises(UserError, match="cannot join a group started by mlx.launch"):
        choose_backend("torch")
    monkeypatch.delenv("MLX_RANK")
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    assert detect_world().launcher == "torchrun" and detect_world().owner
    with pytest.raises(UserError, match="train.backend mlx cannot join"):
        choose_backend("mlx")


def test_plan_prices_the_all_reduce_per_rank():
    """r=64 on all seven projections of Qwen2.5-32B: 537M float32 gradients, 2.1 GB a step."""
    from mlx_eden.memory.session import plan_recipe
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-32b-eden-m3max.yaml")
    one, _ = plan_recipe(recipe, "mac-64gb", None, False, 1)
    two, _ = plan_recipe(recipe, "mac-64gb", None, False, 2)
    assert "communication buffer" not in one.estimate.components
    payload = [v for k, v in two.estimate.notes.items() if k.startswith("all-reduce payload")]
    assert payload == [536_870_912 * 4] == [two.estimate.trainable_params * 4]
    assert two.estimate.sizes["communication buffer"] == payload[0] + 3 * (32 << 20)
    assert two.predicted_peak_bytes >= one.predicted_peak_bytes


def test_ranks_that_would_start_from_different_checkpoints_are_refused(tmp_path):
    """A rank that finds another copy of the run directory (or none) must not train other
    weights silently. The collective is the part replaced here: its answer is given."""
    from mlx_eden.backends.base import World
    from mlx_eden.errors import UserError
    from mlx_eden.run.rundir import RunDir
    from mlx_eden.run.world import check_same_start

    class Answered:
        def __init__(self, steps):
            self.world, self.steps = World(0, len(steps)), steps

        def gather(self, value):
            return self.steps

    check_same_start(Answered([3, 3]), 3, RunDir(tmp_path))
    with pytest.raises(UserError, match=r"different steps \(3, 0\)"):
        check_same_start(Answered([3, 0]), 3, RunDir(tmp_path))


def test_a_jaccl_launch_is_detected_from_its_device_file(monkeypatch, tmp_path):
    """mlx.launch --backend jaccl (RDMA over Thunderbolt 5) writes no hostfile: the group size is
    the device file's length and the transport is JACCL (the hardware is not here: detection and
    run.json only)."""
    from mlx_eden.backends.base import detect_world
    from mlx_eden.run.world import world_info

    devices = tmp_path / "ibv.json"
    devices.write_text('[[null, "rdma_en3"], ["rdma_en3", null]]')  # as launch_jaccl writes it
    monkeypatch.setenv("MLX_RANK", "0")
    monkeypatch.setenv("MLX_IBV_DEVICES", str(devices))
    monkeypatch.setenv("MLX_JACCL_COORDINATOR", "10.0.0.1:32323")
    world = detect_world()
    assert (world.rank, world.size, world.transport) == (0, 2, "jaccl")
    assert world_info(world, "mlx") == {"world_size": 2, "backend": "jaccl",
                                        "launcher": "mlx.launch", "hosts": ["10.0.0.1:32323"]}
