"""The MLX trainer through the real CLI: loss falls, run directory, interop with mlx-lm,
QLoRA/DoRA, exact resume after SIGKILL, early stopping, NaN guard, golden curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import EDEN, ROOT, run_cli

DEMO = ROOT / "recipes" / "tiny-demo.yaml"
GOLDEN = Path(__file__).parent / "golden" / "tiny_losses.json"


def sets(model, **kw):
    """--set arguments for a short, deterministic run of the demo recipe on `model`."""
    base = {"model.path": model, "train.backend": "mlx", "data.max_seq_length": 128, "data.packing": "false",
            "train.log_every": 1, "train.eval_every": 0, "train.save_every": 0,
            "train.eval_batches": 2,
            "train.learning_rate": 1e-3, "train.warmup_steps": 0}
    base.update(kw)
    out = []
    for k, v in base.items():
        out += ["--set", f"{k}={v}"]
    return out


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def losses(run: Path) -> list[float]:
    return [e["loss"] for e in events(run, "train")]


def train(tmp_path, name, model, **kw):
    out = tmp_path / name
    proc = run_cli("train", DEMO, *sets(model, **kw), "--output", out, "--no-dashboard")
    return out, proc


def falls(ls: list[float], margin: float) -> bool:
    return np.mean(ls[-3:]) < np.mean(ls[:3]) - margin


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_qwen2):
    out, proc = train(tmp_path_factory.mktemp("runs"), "lora", tiny_qwen2, **{
        "train.max_steps": 30, "train.eval_every": 10, "train.save_every": 10})
    assert proc.returncode == 0, proc.stderr
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def test_loss_falls_and_run_dir_is_complete(lora_run):
    ls = losses(lora_run)
    assert len(ls) == 30 and falls(ls, 0.5), ls
    info = json.loads((lora_run / "run.json").read_text())
    assert info["status"] == "completed" and info["backend"] == "mlx"
    assert {"python", "mlx", "mlx-lm", "mlx-eden"} <= info["versions"].keys()
    assert set(info["data"]) == {f"data/samples/chat/{s}.jsonl" for s in ("train", "valid", "test")}
    assert all(len(h) == 64 for h in info["data"].values())
    assert info["recipe"]["train"]["max_steps"] == 30 and info["started"] and info["ended"]
    step = events(lora_run, "train")[-1]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "trained_tokens_per_sec",
            "peak_memory_gb"} <= step.keys()
    ev = events(lora_run, "eval")
    assert [e["step"] for e in ev] == [10, 20, 30] and all("val_ppl" in e for e in ev)
    for d in ("adapter", "best"):
        assert {p.name for p in (lora_run / d).iterdir()} == {"adapters.safetensors",
                                                              "adapter_config.json"}
    ckpts = sorted(p.name for p in (lora_run / "checkpoints").iterdir())
    assert ckpts == ["step-0000020", "step-0000030"]  # keep_checkpoints=2
    assert {p.name for p in (lora_run / "checkpoints" / "step-0000030").iterdir()} == {
        "adapters.safetensors", "adapter_config.json", "optimizer.safetensors",
        "trainer_state.json"}
    assert not [p for p in lora_run.iterdir() if p.name.startswith(".tmp")]


def test_phases_of_the_wall_time_are_recorded(lora_run):
    """run.json and the plain log's last line say where the time went (run/phases.py)."""
    phases = json.loads((lora_run / "run.json").read_text())["phases"]
    assert list(phases) == ["startup", "planning", "data", "model_load", "first_step",
                            "train_steps", "eval", "checkpoints", "best_adapter", "other",
                            "total"]
    assert all(v > 0 for k, v in phases.items() if k != "other"), phases
    times = [e["step_time"] for e in events(lora_run, "train")]
    assert abs(phases["first_step"] - times[0]) < 0.01  # the compiling step, apart
    assert abs(phases["train_steps"] - sum(times[1:])) < 0.05
    assert phases["total"] >= sum(times) + phases["eval"] + phases["startup"]
    last = (lora_run / "stdout.txt").read_text().splitlines()[-1]
    assert last.startswith("phases startup=") and f"total={phases['total']:.1f}s" in last


def test_mlx_lm_loads_the_adapter_with_the_same_logits(lora_run, tiny_qwen2):
    import mlx.core as mx
    from mlx_lm import load

    from mlx_eden.backends.mlx import model as M
    from mlx_eden.backends.mlx.backend import MLXBackend
    from mlx_eden.recipe import recipe_from_dict

    recipe = recipe_from_dict(json.loads((lora_run / "run.json").read_text())["recipe"])
    ours = MLXBackend()
    ours.setup(recipe, tiny_qwen2)
    ours.load_adapter(lora_run / "adapter")
    ids = mx.array([[5, 9, 31, 200, 77, 12, 300, 41]])
    mine = M.head(ours.model, M.hidden_states(ours.model, ids, "causal", False))
    theirs_model, _ = load(str(tiny_qwen2), adapter_path=str(lora_run / "adapter"))
    theirs = theirs_model(ids)
    base_model, _ = load(str(tiny_qwen2))
    diff = np.abs(np.array(mine) - np.array(theirs)).max()
    assert diff < 1e-5
    assert np.abs(np.array(theirs) - np.array(base_model(ids))).max() > 1e-2  # adapter applied


@pytest.mark.parametrize("kind", ["qlora", "dora"])
def test_qlora_and_dora_train(tmp_path, kind, tiny_qwen2, tiny_small_4bit):
    model = tiny_small_4bit if kind == "qlora" else tiny_qwen2
    extra = {"adapter.type": "dora"} if kind == "dora" else \
        {"data.max_seq_length": 64, "train.batch_size": 2, "train.learning_rate": 3e-3}
    out, proc = train(tmp_path, kind, model, **{"train.max_steps": 20, **extra})
    assert proc.returncode == 0, proc.stderr
    assert falls(losses(out), 0.3), losses(out)
    info = json.loads((out / "run.json").read_text())
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    if kind == "qlora":
        assert info["model"]["quantized_bits"] == 4
    else:
        assert cfg["fine_tune_type"] == "dora"


def test_quantize_at_load_time(tmp_path, tiny_small):
    out, proc = train(tmp_path, "q", tiny_small, **{"train.max_steps": 2,
                                                    "data.max_seq_length": 64,
                                                    "model.quantize.bits": 4})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "run.json").read_text())["model"]["quantized_bits"] == 4


def test_golden_curve(lora_run):
    """The first 5 losses of a fixed tiny run, stored: any change to numerics shows here.
    Regenerate deliberately with EDEN_UPDATE_GOLDEN=1."""
    got = losses(lora_run)[:5]
    if os.environ.get("EDEN_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"losses": got}, indent=2) + "\n")
    want = json.loads(GOLDEN.read_text())["losses"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def _wait_for(predicate, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_resume_after_sigkill_is_exact(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 12, "train.save_every": 4, "adapter.dropout": 0.1,
          "train.keep_checkpoints": 5}
    full, proc = train(tmp_path, "full", tiny_qwen2, **kw)
    assert proc.returncode == 0, proc.stderr

    killed = tmp_path / "killed"
    cmd = EDEN + ["train", str(DEMO), *sets(tiny_qwen2, **kw), "--output", str(killed),
                  "--no-dashboard"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def checkpoint_written():
        m = killed / "metrics.jsonl"
        return m.exists() and '"what": "checkpoint"' in m.read_text()

    assert _wait_for(checkpoint_written, p), p.stderr.read() if p.stderr else ""
    p.send_signal(signal.SIGKILL)
    p.wait()
    steps_before = {e["step"] for e in events(killed, "train")}
    assert max(steps_before) < 12  # it really was cut short

    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **kw), "--output", killed, "--resume",
                   "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    a, b = events(full, "train"), events(killed, "train")
    assert [e["step"] for e in b] == list(range(1, 13))  # no duplicated or missing steps
    np.testing.assert_allclose([e["loss"] for e in b], [e["loss"] for e in a], atol=1e-5, rtol=0)
    assert [e["lr"] for e in b] == [e["lr"] for e in a]
    import mlx.core as mx

    wa = mx.load(str(full / "adapter" / "adapters.safetensors"))
    wb = mx.load(str(killed / "adapter" / "adapters.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float(mx.abs(wa[k] - wb[k]).max()) for k in wa) <= 1e-5
    assert json.loads((killed / "run.json").read_text())["resumed_from"]

    # Resuming with another adapter shape is refused in one line; nothing is overwritten.
    before = (killed / "adapter" / "adapters.safetensors").read_bytes()
    proc = run_cli("train", DEMO, *sets(tiny_qwen2, **{**kw, "adapter.rank": 4}),
                   "--output", killed, "--resume", "--no-dashboard")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {killed / 'run.json'}: the recipe differs from the run being resumed in "
        "adapter.rank (resume with the run's own recipe, or start a new run with --output "
        "NEW_DIR)")
    assert (killed / "adapter" / "adapters.safetensors").read_bytes() == before


def _label_data(tmp_path, answer: str, n: int) -> Path:
    f = tmp_path / f"{answer}.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Is {i} a number?"},
                          {"role": "assistant", "content": answer}]} for i in range(n)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_early_stopping_keeps_the_best_adapter(tmp_path, tiny_qwen2):
    # Train to answer "yes" while validating on "no" for the same questions: once the shared
    # chat structure is learnt, the validation loss can only rise and patience runs out.
    train_f, valid_f = _label_data(tmp_path, "yes", 32), _label_data(tmp_path, "no", 8)
    out, proc = train(tmp_path, "es", tiny_qwen2, **{
        "data.train": train_f, "data.valid": valid_f, "data.test": "[]",
        "train.max_steps": 60, "train.eval_every": 2, "train.save_every": 2,
        "train.keep_checkpoints": 30, "train.early_stopping.patience": 2,
        "train.learning_rate": 3e-3})
    assert proc.returncode == 0, proc.stderr
    ev = events(out, "eval")
    stop = events(out, "stop")[0]
    assert stop["status"] == "early_stopped" and stop["step"] < 60
    assert [e["improved"] for e in ev[-2:]] == [False, False] and ev[0]["improved"]
    assert "no improvement for 2 evaluations" in proc.stdout
    best_step = stop["extra"]["best_step"]
    assert best_step == max(e["step"] for e in ev if e["improved"])
    best = (out / "best" / "adapters.safetensors").read_bytes()
    ckpt = out / "checkpoints" / f"step-{best_step:07d}" / "adapters.safetensors"
    assert best == ckpt.read_bytes()
    assert best != (out / "adapter" / "adapters.safetensors").read_bytes()


def test_nan_stops_with_a_clear_message_and_a_good_checkpoint(tmp_path, tiny_qwen2):
    # float16 activations overflow within a few steps at this learning rate: a real divergence.
    out, proc = train(tmp_path, "nan", tiny_qwen2, **{
        "model.dtype": "float16", "train.max_steps": 30, "train.save_every": 1,
        "train.learning_rate": 0.3, "train.max_grad_norm": "null"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    stop = events(out, "stop")[0]
    bad = stop["step"] + 1
    assert stop["status"] == "nan" and f"at step {bad}" in stop["reason"]
    # The checkpoint of step bad-1 held the weights that produced the NaN: it was never
    # published. The last published one is bad-2, and it loads and computes finite logits.
    last = sorted((out / "checkpoints").iterdir())[-1]
    assert int(last.name.split("-")[1]) == bad - 2
    assert str(last) in stop["reason"]
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(tiny_qwen2), adapter_path=str(last))
    logits = model(mx.array([[1, 2, 3]]))
    assert bool(mx.isfinite(logits).all())
    assert json.loads((out / "run.json").read_text())["status"] == "nan"
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_gradient_accumulation_matches_a_bigger_batch(tiny_qwen2):
    """batch 4 x accum 1 and batch 2 x accum 2 take the same first step (SGD, so the update is
    proportional to the gradient and any normalisation error would show)."""
    import mlx.core as mx

    from mlx_eden.backends.mlx import model as M
    from mlx_eden.backends.mlx.backend import MLXBackend
    from mlx_eden.data.batching import collate
    from mlx_eden.data.render import load_tokenizer
    from mlx_eden.data.splits import load_splits
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(DEMO, ["train.optimizer=sgd", "train.max_grad_norm=null",
                                f"model.path={tiny_qwen2}", "data.max_seq_length=128"])
    tok = load_tokenizer(tiny_qwen2)
    samples = load_splits(recipe.data, tok, 0).train[:4]
    updates = []
    for groups in ([[0, 1, 2, 3]], [[0, 1], [2, 3]]):
        backend = MLXBackend()
        backend.setup(recipe, tiny_qwen2)
        before = {k: np.array(v) for k, v in M.adapter_weights(backend.model).items()}
        batches = [collate(samples, [[i] for i in g], tok.pad_token_id, False) for g in groups]
        backend.train_step(batches, lr=1.0, step=1)
        after = M.adapter_weights(backend.model)
        updates.append({k: np.array(after[k]) - before[k] for k in before})
    a, b = updates
    assert max(np.abs(a[k]).max() for k in a) > 1e-3  # a real step was taken
    assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-5
    del mx


def test_chunked_loss_equals_the_plain_loss_with_gradients(tiny_small_4bit):
    """train.loss_chunk changes memory, not numbers (quantized base: the path the 32B runs)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_eden.backends.mlx import model as M
    from mlx_eden.backends.mlx.backend import MLXBackend
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(DEMO, [f"model.path={tiny_small_4bit}", "adapter.rank=4"])
    b = MLXBackend()
    b.setup(recipe, tiny_small_4bit)
    for _, module in b.model.named_modules():  # non-zero B so every gradient path is live
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.05
    rng = np.random.default_rng(0)
    inputs = mx.array(rng.integers(0, 500, (2, 24)))
    targets = mx.array(rng.integers(0, 500, (2, 24)))
    weights = mx.array((rng.random((2, 24)) > 0.3).astype(np.float32))
    segments = mx.ones((2, 24), dtype=mx.int32)
    results = []
    for chunk in (0, 7):
        fn = nn.value_and_grad(b.model, lambda *a, c=chunk: M.loss_sum(
            b.model, *a, packed=False, checkpoint=False, chunk=c))
        loss, grads = fn(inputs, targets, weights, segments)
        results.append((loss.item(), dict(tree_flatten(grads))))
    (l0, g0), (l1, g1) = results
    assert abs(l0 - l1) <= 1e-5 * max(1.0, abs(l0))
    assert max(float(mx.abs(g0[k] - g1[k]).max()) for k in g0) <= 1e-5
