"""adapter.init: loftq on the tiny model: base + adapter starts closer to the float weights,
iters>1 stores its own quantized base (used by resume, eval and fuse), the planner prices the
load-time float spike, and bad combinations are refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mlx_eden.errors import UserError
from mlx_eden.memory.loftq import LAYER_COPIES, loftq_spike
from mlx_eden.memory.planner import Settings, estimate
from mlx_eden.memory.shapes import load_config, shape_from_config
from mlx_eden.recipe import load_recipe

from .conftest import ROOT, run_cli

DEMO = ROOT / "recipes" / "tiny-demo.yaml"
QLORA = ["train.backend=mlx", "model.dtype=float32", "model.quantize.bits=4", "adapter.rank=8",
         "adapter.alpha=16", "adapter.init=loftq"]


def _setup(model, *overrides):
    from mlx_eden.backends.mlx.backend import MLXBackend

    backend = MLXBackend()
    backend.setup(load_recipe(DEMO, [f"model.path={model}", *QLORA, *overrides]), model)
    return backend


def _residuals(backend, floats, group=64, bits=4):
    """{module: (||W - deq(Q)||, ||W - (deq(Q) + s BA)||)} of every adapted layer."""
    import mlx.core as mx

    from mlx_eden.backends.mlx import loftq as L

    out = {}
    for name, m in backend.model.named_modules():
        if hasattr(m, "lora_a"):
            w = np.array(floats[name].astype(mx.float32))
            q = (m.linear.weight, m.linear.scales, m.linear.biases)
            a, b = np.array(m.lora_a), np.array(m.lora_b)
            plain = float(np.linalg.norm(w - L.dequantize(q, group, bits)))
            out[name] = plain, L.residual(w, q, a, b, m.scale, group, bits)
    return out


@pytest.fixture(scope="module")
def floats(tiny_small):
    from mlx_eden.backends.mlx import loftq as L

    return L.float_weights(tiny_small, "float32")


@pytest.fixture(scope="module")
def one_iter(tiny_small, floats):
    return _residuals(_setup(tiny_small), floats)


def test_loftq_lowers_the_residual_of_every_layer(tiny_small, floats, one_iter):
    import mlx.core as mx

    plain = _setup(tiny_small, "adapter.init=default")
    for name, (before, after) in _residuals(plain, floats).items():
        assert after == pytest.approx(before, rel=1e-6), name  # B = 0: base + adapter = deq(Q)
        assert one_iter[name][0] == pytest.approx(before, rel=1e-6)  # iters=1: the same Q
        assert one_iter[name][1] < 0.97 * before, (name, one_iter[name])
    # iters=1 leaves the base exactly as model.quantize makes it (nothing to store)
    m = dict(plain.model.named_modules())["model.layers.0.mlp.down_proj"].linear
    w = floats["model.layers.0.mlp.down_proj"]
    assert mx.array_equal(m.weight, mx.quantize(w, group_size=64, bits=4)[0])


def test_more_iterations_lower_it_again(tiny_small, floats, one_iter):
    two = _residuals(_setup(tiny_small, "adapter.loftq_iters=2"), floats)
    for name, (base_residual, after) in two.items():
        assert base_residual != pytest.approx(one_iter[name][0], rel=1e-6)  # Q changed
        assert after < one_iter[name][1], (name, after, one_iter[name])


def test_without_the_svd_nothing_is_gained(tiny_small, floats, monkeypatch):
    """The mutation kept as a check: a rank-r factor of zeros leaves the plain residual."""
    from mlx_eden.backends.mlx import loftq as L

    monkeypatch.setattr(L, "_low_rank", lambda r, rank, scale: (
        np.zeros((r.shape[1], rank), np.float32), np.zeros((rank, r.shape[0]), np.float32)))
    for name, (before, after) in _residuals(_setup(tiny_small), floats).items():
        assert not after < 0.97 * before, name


def _train(out, model, *extra, resume=False):
    sets = [f"model.path={model}", *QLORA, "adapter.loftq_iters=2", "data.max_seq_length=64",
            "data.packing=false", "train.batch_size=2", "train.log_every=1",
            "train.eval_every=0", "train.eval_batches=1", "train.max_steps=4",
            "train.save_every=2", "train.keep_checkpoints=5", *extra]
    args = ["train", DEMO, *[x for s in sets for x in ("--set", s)], "--output", out,
            "--no-dashboard"]
    proc = run_cli(*args, *(["--resume"] if resume else []))
    assert proc.returncode == 0, proc.stderr
    return [e["loss"] for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if e["event"] == "train"]


@pytest.fixture(scope="module")
def loftq_run(tmp_path_factory, tiny_small):
    out = tmp_path_factory.mktemp("loftq") / "run"
    return out, _train(out, tiny_small)


def test_training_stores_one_base_and_resumes_exactly(loftq_run, tiny_small, tmp_path):
    import mlx.core as mx

    from mlx_eden.backends.mlx.loftq import BASE_FILE

    run, losses = loftq_run
    assert len(losses) == 4 and all(np.isfinite(losses))
    copies = [run / BASE_FILE, run / "adapter" / BASE_FILE, run / "best" / BASE_FILE,
              *sorted(run.glob(f"checkpoints/*/{BASE_FILE}"))]
    assert len(copies) == 5 and len({c.stat().st_ino for c in copies}) == 1  # hard links
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    shutil.rmtree(cut / "checkpoints" / "step-0000004")
    np.testing.assert_allclose(_train(cut, tiny_small, resume=True), losses, atol=1e-6, rtol=0)
    a = mx.load(str(run / "adapter" / "adapters.safetensors"))
    b = mx.load(str(cut / "adapter" / "adapters.safetensors"))
    assert max(float(mx.abs(a[k] - b[k]).max()) for k in a) == 0.0


def test_fuse_merges_into_the_stored_base(loftq_run, tiny_small, floats, tmp_path):
    """deq(stored Q) + s BA, not the float W + s BA (that would count the correction twice)."""
    import mlx.core as mx

    from mlx_eden.backends.mlx.loftq import BASE_FILE

    adapter = loftq_run[0] / "adapter"
    proc = run_cli("fuse", "--model", tiny_small, "--adapter", adapter, "--output",
                   tmp_path / "fused", "--dtype", "f32")
    assert proc.returncode == 0, proc.stderr
    fused = mx.load(str(tmp_path / "fused" / "model.safetensors"))
    q, ab = mx.load(str(adapter / BASE_FILE)), mx.load(str(adapter / "adapters.safetensors"))
    name = "model.layers.1.self_attn.o_proj"
    deq = mx.dequantize(q[f"{name}.weight"], q[f"{name}.scales"], q[f"{name}.biases"],
                        group_size=64, bits=4)
    want = deq + 2.0 * (ab[f"{name}.lora_a"] @ ab[f"{name}.lora_b"]).T
    assert float(mx.abs(fused[f"{name}.weight"] - want).max()) < 1e-5
    # and closer to the float weight than the quantized base alone
    w = floats[name]
    assert float(mx.abs(fused[f"{name}.weight"] - w).sum()) < float(mx.abs(deq - w).sum())


def test_a_later_stage_continues_on_the_stored_base(loftq_run, tiny_small, tmp_path):
    """adapter.init_from a LoftQ (iters=2) adapter: its base comes along, and is saved again."""
    import mlx.core as mx

    from mlx_eden.backends.mlx.loftq import BASE_FILE

    adapter = loftq_run[0] / "adapter"
    stage2 = _setup(tiny_small, "adapter.init=default", f"adapter.init_from={adapter}")
    stored = mx.load(str(adapter / BASE_FILE))
    layer = dict(stage2.model.named_modules())["model.layers.0.mlp.up_proj"].linear
    assert mx.array_equal(layer.scales, stored["model.layers.0.mlp.up_proj.scales"])
    stage2.save_adapter(tmp_path / "next" / "adapter")
    again = mx.load(str(tmp_path / "next" / "adapter" / BASE_FILE))
    assert all(mx.array_equal(again[k], stored[k]) for k in stored)


def test_export_peft_refuses_a_loftq_adapter(loftq_run, tmp_path):
    proc = run_cli("export", "peft", loftq_run[0] / "adapter", "--output", tmp_path / "p")
    assert proc.returncode == 2
    assert "LoftQ adapter corrects its own quantized base" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


@pytest.mark.parametrize("extra, key", [
    (["model.quantize.bits=null"], "adapter.init"),
    (["adapter.type=dora"], "adapter.init"),
    (["adapter.loftq_iters=0"], "adapter.loftq_iters")])
def test_bad_combinations_are_refused(extra, key):
    with pytest.raises(UserError, match=key):
        load_recipe(DEMO, [*QLORA, *extra])


def test_a_quantized_checkpoint_is_refused(tiny_small_4bit):
    with pytest.raises(UserError, match="needs a float checkpoint"):
        _setup(tiny_small_4bit)


def test_planner_prices_the_load_spike(tiny_qwen3):
    shape = shape_from_config(load_config(str(tiny_qwen3))[0])
    plain = load_recipe(DEMO, [f"model.path={tiny_qwen3}", *QLORA[:-1]])
    loftq = load_recipe(DEMO, [f"model.path={tiny_qwen3}", *QLORA])
    a, b = (estimate(shape, Settings.from_recipe(r, shape)) for r in (plain, loftq))
    assert "load, LoftQ" not in a.phases and "load transient" not in a.components
    spike = loftq_spike(shape, loftq.adapter.target_names, 8, 4)
    i, o = shape.projection("gate_proj")  # the largest adapted projection
    assert spike >= (LAYER_COPIES + 2) * i * o * 4
    resident = a.sizes["base weights"] + a.sizes["adapters"]  # no optimizer state yet
    assert b.phases["load, LoftQ"] == resident + spike
    assert b.sizes["load transient"] == spike


_MEASURE = """
import numpy as np
import mlx_eden.backends.mlx
from mlx_eden.backends.mlx import loftq as L
def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss survives exec from pytest)
    return 1024 * int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
w = (np.random.default_rng(0).standard_normal((1024, 2048)) * 0.02).astype(np.float32)
L.loftq_layer(w[:64, :128], 16, 2.0, 4, 64, 2)  # first BLAS/LAPACK calls allocate buffers
cur = status("VmRSS")
L.loftq_layer(w, 16, 2.0, 4, 64, 2)
print(status("VmHWM") - cur)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_priced_spike_covers_the_measured_one():
    """One LoftQ layer (iters=2) in a fresh process: its peak RSS growth stays under the
    planner's price for it (which is not padded far beyond it)."""
    grew = int(subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True,
                              check=True, cwd=ROOT).stdout)
    priced = LAYER_COPIES * 1024 * 2048 * 4
    assert 0.6 * priced < grew < priced, (grew, priced)


def test_evaluation_scores_the_plain_base_then_the_stored_one(loftq_run, tiny_small, tmp_path):
    """`--baseline base` of a LoftQ run scores the base as training loads it (plain 4-bit, no
    LoftQ adapter); the adapter then brings its own stored base. Without the zero-adapter setup
    the "base" scores would be base + LoftQ's starting adapter (and its SVDs recomputed)."""
    from mlx_eden.eval.runner import evaluate

    sets = [f"model.path={tiny_small}", *QLORA, "adapter.loftq_iters=2", "data.max_seq_length=64"]
    loftq = load_recipe(DEMO, sets)

    def heldout(recipe, adapter, out):
        summary = evaluate(recipe, adapter=adapter, out_dir=tmp_path / out, only=("heldout",),
                           backend="mlx")
        return summary["suites"]["heldout"]["loss"]

    base = heldout(loftq, None, "base")
    assert base == heldout(load_recipe(DEMO, [*sets, "adapter.init=default"]), None, "plain")
    assert heldout(loftq, loftq_run[0] / "adapter", "trained") != pytest.approx(base, rel=1e-4)
