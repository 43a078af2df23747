"""How faithful and how costly each GGUF export type is, on the tiny Qwen2 (tied) and Qwen3
(untied) models, measured in llama.cpp (llama-cpp-python, f32 KV cache) against MLX.

For every --quant: logits vs the exporter's reference (float types: the float32 folder;
quantized types: MLX on the very weights the file holds), logits vs the float32 model (what
quantization itself costs), file size and export time, both as ratios to the f32 export made
in the same run (the anchor; the machine is shared and noisy).

    python benchmarks/export_fidelity.py

Writes benchmarks/results/export_fidelity.json and prints a table.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path

import mlx_eden.backends.mlx  # noqa: F401  (fast BLAS before mlx.core)
from mlx_eden.backends.mlx.inference import folder_logits, weights_logits
from mlx_eden.export.llamacpp import LlamaCpp
from mlx_eden.export.probe import compare, probe_ids
from mlx_eden.export.readback import dequantized_weights
from mlx_eden.export.to_gguf import QUANT_CHOICES, export_gguf
from mlx_eden.tiny import TinySpec, write_tiny

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "export_fidelity.json"
MODELS = {"qwen2-tied": TinySpec(), "qwen3-untied": TinySpec(arch="qwen3", tied=False, seed=1)}


def measure(model_dir: Path, work: Path) -> list[dict]:
    prompts = probe_ids(model_dir)
    exact = folder_logits(model_dir, prompts)
    rows, anchor = [], None
    for quant in QUANT_CHOICES:
        path = work / f"{model_dir.name}-{quant}.gguf"
        start = time.perf_counter()
        report = export_gguf(model_dir, path, quant)
        seconds = time.perf_counter() - start
        llm = LlamaCpp(path)
        got = llm.all_logits(prompts)
        llm.close()
        reference = exact if quant in ("f32", "f16", "bf16") else weights_logits(
            model_dir, dequantized_weights(path, model_dir), prompts)
        anchor = anchor or (seconds, path.stat().st_size)
        rows.append({"quant": quant, "types": report.types,
                     "vs_reference": compare(got, reference).as_dict(),
                     "vs_float32_model": compare(got, exact).as_dict(),
                     "bytes": path.stat().st_size, "size_vs_f32": path.stat().st_size / anchor[1],
                     "seconds": seconds, "time_vs_f32": seconds / anchor[0]})
    return rows


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in MODELS.items():
            results[name] = measure(write_tiny(Path(tmp) / name, spec), Path(tmp))
    versions = {p: metadata.version(p) for p in ("mlx", "mlx-lm", "gguf", "llama_cpp_python")}
    out = {"machine": platform.platform(), "processor": platform.processor(),
           "versions": versions, "anchor": "the f32 export of the same model in this run",
           "results": results}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2))
    print(f"{'model':14} {'quant':7} {'max|Δ| ref':>11} {'rel ref':>9} {'agree':>6} "
          f"{'rel float':>9} {'size':>6} {'time':>6}")
    for name, rows in results.items():
        for r in rows:
            ref, flt = r["vs_reference"], r["vs_float32_model"]
            print(f"{name:14} {r['quant']:7} {ref['max_abs']:11.2e} {ref['rel']:9.2e} "
                  f"{ref['argmax_agree']:6.1%} {flt['rel']:9.2e} {r['size_vs_f32']:6.2f} "
                  f"{r['time_vs_f32']:6.2f}")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
