"""How close is the memory planner to MLX's measured peak? And what do the levers save?

For each configuration (tiny/small/medium local models; batch, sequence, rank, quantization,
checkpointing, chunked loss, optimizer; fused attention) a fresh process trains 3 steps on synthetic
full-length batches and reports mx.get_peak_memory(); the planner's prediction is computed here
without MLX. Both run in MLX's strict mode (memory limit of one byte: MLX waits for work in flight
before each op), which measures the memory a run needs rather than how far MLX's scheduler runs
ahead (the trainer bounds that run-ahead by the budget). mlx-lm's own trainer
(mlx_lm.tuner.trainer.train, same model, LoRA, batch, sequence, checkpointing and Adam) is measured
the same way, so our levers are stated as ratios to it.

    .venv/bin/python benchmarks/memory_profile.py          # ~40 min; writes results/memory_profile.json
    .venv/bin/python benchmarks/memory_profile.py --reuse  # planner changed: re-predict only

Each measurement is also stored in benchmarks/work/memory_profile/measured.json, keyed by the
configuration's settings; --reuse takes the stored ones (measurements depend on the backend
code, not on the planner) and measures only what is missing.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / "benchmarks" / "work" / "memory_profile"
RESULT = ROOT / "benchmarks" / "results" / "memory_profile.json"
CACHE = WORK / "measured.json"
STEPS = 3

MODELS = {  # TinySpec fields
    "tiny": dict(hidden=256, heads=4, kv_heads=2, layers=2, intermediate=768, vocab=2048),
    "small": dict(hidden=512, heads=8, kv_heads=2, layers=4, intermediate=1536, vocab=4096),
    "medium": dict(hidden=768, heads=12, kv_heads=4, layers=6, intermediate=2048, vocab=8192),
}


def cfg(name, model, batch=2, seq=256, rank=8, quant=None, ckpt=False, chunk=0,
        optimizer="adam", dtype="bfloat16", targets="all"):
    sets = [f"data.max_seq_length={seq}", f"train.batch_size={batch}", f"adapter.rank={rank}",
            f"adapter.alpha={2 * rank}", f"train.grad_checkpoint={str(ckpt).lower()}",
            f"train.loss_chunk={chunk}", f"train.optimizer={optimizer}", f"model.dtype={dtype}",
            f"adapter.targets={targets}",
            # The planner was fitted on this set before blockwise attention (now the default)
            # existed: it stays on the fused path so each re-measurement compares like with like
            # (planner_heldout.py's calibration_rows predicts it fused; mlx-lm's trainer is fused).
            "train.attention=fused"]
    return {"name": name, "model": model, "quant": quant, "set": sets}


CONFIGS = [
    cfg("tiny-b2-s256", "tiny"),
    cfg("tiny-b4-s256-fp32", "tiny", batch=4, dtype="float32"),
    cfg("tiny-b2-s512-chunk", "tiny", seq=512, chunk=256),
    cfg("small-b2-s256", "small"),
    cfg("small-b2-s256-ckpt", "small", ckpt=True),
    cfg("small-b2-s256-chunk", "small", chunk=128),
    cfg("small-b2-s256-ckpt-chunk", "small", ckpt=True, chunk=128),
    cfg("small-b1-s512-r64", "small", batch=1, seq=512, rank=64),
    cfg("small-b2-s256-8bit", "small", optimizer="adamw8bit"),
    cfg("medium-b1-s512", "medium", batch=1, seq=512),
    cfg("medium-b1-s512-ckpt-chunk", "medium", batch=1, seq=512, ckpt=True, chunk=256),
    # 4-bit bases on the tiny model only: MLX's CPU quantized matmul is ~40x slower than its
    # float one here, and strict mode waits after every op (a small 4-bit config took 15+ min).
    cfg("tiny-q4-b2-s256", "tiny", quant=4),
    cfg("tiny-q4-b2-s256-ckpt-chunk-8bit", "tiny", quant=4, ckpt=True, chunk=128,
        optimizer="adamw8bit"),
    cfg("tiny-q4-b1-s512-r16-attn", "tiny", quant=4, batch=1, seq=512, rank=16,
        targets="attention"),
]


# --------------------------------------------------------------------------- child processes


def model_dir(name: str, quant: int | None) -> Path:
    from mlx_eden.tiny import TinySpec, write_tiny

    base = WORK / name
    if not (base / "config.json").exists():
        write_tiny(base, TinySpec(**MODELS[name]))
    if not quant:
        return base
    q = WORK / f"{name}-q{quant}"
    if not (q / "config.json").exists():
        from mlx_eden.backends.mlx.convert import quantize_folder

        quantize_folder(base, q, quant, 64)
    return q


def measure_ours(c: dict) -> dict:
    import mlx_eden.backends.mlx  # noqa: F401  (fast BLAS before mlx.core)
    from mlx_eden.memory.measure import run_profile
    from mlx_eden.recipe import load_recipe

    m = run_profile(load_recipe(None, c["set"]), model_dir(c["model"], c["quant"]), STEPS,
                    strict=True)
    return {"peak": m.peak, "phases": m.phases, "step_seconds": m.step_seconds}


def measure_mlx_lm(c: dict) -> dict:
    """mlx-lm's trainer on the same model, LoRA, batch, sequence and checkpointing."""
    import contextlib
    import io

    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load_model

    import mlx_eden.backends.mlx  # noqa: F401
    from mlx_eden.recipe import load_recipe

    r = load_recipe(None, c["set"])
    model, _ = load_model(model_dir(c["model"], c["quant"]))
    model.set_dtype({"bfloat16": mx.bfloat16, "float32": mx.float32}[r.model.dtype])
    model.freeze()
    keys = [f"{'self_attn' if p in ('q_proj', 'k_proj', 'v_proj', 'o_proj') else 'mlp'}.{p}"
            for p in r.adapter.target_names]
    linear_to_lora_layers(model, len(model.layers), {"rank": r.adapter.rank,
                                                     "scale": r.adapter.scale, "dropout": 0.0,
                                                     "keys": keys})
    mx.eval(model.parameters())
    L, B = r.data.max_seq_length, r.train.batch_size
    rng = np.random.default_rng(0)
    vocab = model.args.vocab_size
    data = [(rng.integers(0, vocab, L + 1).tolist(), 0) for _ in range(4 * B)]
    args = TrainingArgs(batch_size=B, iters=STEPS, max_seq_length=L + 1,
                        grad_checkpoint=r.train.grad_checkpoint, steps_per_report=10**6,
                        steps_per_save=10**6, adapter_file=str(WORK / "mlx_lm_adapters.safetensors"))
    mx.set_memory_limit(1)
    mx.reset_peak_memory()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        train(model, optim.Adam(learning_rate=1e-4), data, args=args)
    return {"peak": mx.get_peak_memory(),
            "step_seconds": (time.perf_counter() - started) / STEPS}


def run_child(kind: str, c: dict, reuse: bool = False) -> dict:
    """One measurement in a fresh process (or the stored one, with reuse)."""
    key = f"{kind} {c['model']} q{c['quant']} {' '.join(c['set'])}"
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if reuse and key in cache:
        return cache[key]
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(c)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{kind} {c['name']} failed:\n{proc.stderr[-2000:]}")
    cache[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    CACHE.write_text(json.dumps(cache, indent=1))
    return cache[key]


# --------------------------------------------------------------------------- the sweep


def predict(c: dict) -> dict:
    from mlx_eden.memory.planner import Settings, estimate
    from mlx_eden.memory.shapes import load_config, shape_from_config
    from mlx_eden.recipe import load_recipe

    cfg_json, _ = load_config(str(model_dir(c["model"], c["quant"])))
    shape = shape_from_config(cfg_json)
    e = estimate(shape, Settings.from_recipe(load_recipe(None, c["set"]), shape))
    return {"peak": e.needed, "with_headroom": e.peak, "phase": e.phase, "params_total": e.params_total,
            "trainable_params": e.trainable_params}


def sweep(reuse: bool = False) -> dict:
    rows = []
    for c in CONFIGS:
        t0 = time.perf_counter()
        pred = predict(c)
        ours = run_child("ours", c, reuse)
        theirs = run_child("mlx_lm", c, reuse)
        err = (pred["peak"] - ours["peak"]) / ours["peak"]
        rows.append({"name": c["name"], "model": c["model"], "settings": c["set"],
                     "quantized_bits": c["quant"], "predicted_peak_bytes": pred["peak"],
                     "predicted_with_headroom_bytes": pred["with_headroom"],
                     "measured_peak_bytes": ours["peak"], "error": round(err, 4),
                     "predicted_phase": pred["phase"], "measured_phases": ours["phases"],
                     "mlx_lm_peak_bytes": theirs["peak"],
                     "ours_over_mlx_lm": round(ours["peak"] / theirs["peak"], 3),
                     "step_seconds": _round(ours.get("step_seconds")),
                     "mlx_lm_step_seconds": _round(theirs.get("step_seconds"))})
        print(f"{c['name']:36s} predicted {pred['peak'] / 2**20:8.1f} MiB  measured "
              f"{ours['peak'] / 2**20:8.1f} MiB  error {err * 100:+5.1f}%  mlx-lm "
              f"{theirs['peak'] / 2**20:8.1f} MiB  ours/mlx-lm {rows[-1]['ours_over_mlx_lm']:.2f}"
              f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    errors = [abs(r["error"]) for r in rows]
    return {"benchmark": "memory_profile", "steps": STEPS, "mode": "strict (mx memory limit 1)",
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "python": platform.python_version(),
                        "mlx": metadata.version("mlx"), "mlx_lm": metadata.version("mlx-lm")},
            "configs": rows, "worst_abs_error": max(errors),
            "median_abs_error": statistics.median(errors), "goal": {"worst": 0.05,
                                                                    "median": 0.02}}


def markdown(result: dict) -> str:
    """The results as the table in benchmarks/README.md."""
    lines = ["| configuration | predicted MiB | measured MiB | error | mlx-lm MiB | ours / mlx-lm |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["configs"]:
        lines.append(f"| {r['name']} | {r['predicted_peak_bytes'] / 2**20:.1f} | "
                     f"{r['measured_peak_bytes'] / 2**20:.1f} | {r['error'] * 100:+.1f}% | "
                     f"{r['mlx_lm_peak_bytes'] / 2**20:.1f} | {r['ours_over_mlx_lm']:.2f} |")
    return "\n".join(lines)


def _round(x):
    return None if x is None else round(x, 2)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, c = sys.argv[2], json.loads(sys.argv[3])
        print(json.dumps(measure_ours(c) if kind == "ours" else measure_mlx_lm(c)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = sweep(reuse="--reuse" in sys.argv)
    result["reused_measurements"] = "--reuse" in sys.argv
    result["seconds"] = round(time.perf_counter() - started)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULT)
    print(markdown(result))
    print(f"worst |error| {result['worst_abs_error'] * 100:.1f}%, median "
          f"{result['median_abs_error'] * 100:.1f}% over {len(result['configs'])} configs "
          f"({result['seconds']}s) -> {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
