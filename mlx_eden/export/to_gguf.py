"""`eden-mlx export gguf`: float GGUF by gguf-py, quantized GGUF by llama.cpp's quantizer."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from ..errors import UserError
from ..safeio import atomic_file
from .files import read_config, source_dtype
from .gguf import FLOAT_TYPES, GGUFReport, arch_of, tensor_plan, write_float_gguf
from .quantize import QUANTS, check_fallbacks, llama_quantize, tensor_types

QUANT_CHOICES = FLOAT_TYPES + tuple(QUANTS)


def intermediate_type(model_dir: Path) -> str:
    """The float GGUF the quantizer reads: as precise as the source, never wider."""
    return {"F16": "f16", "BF16": "bf16"}.get(source_dtype(model_dir), "f32")


def export_gguf(model_dir: str | Path, output: str | Path, quant: str = "f16", *,
                allow_fallback: bool = False) -> GGUFReport:
    """Write `model_dir` (a float Hugging Face folder, e.g. from `eden-mlx fuse`) as GGUF."""
    if quant not in QUANT_CHOICES:
        raise UserError(f"unknown quant {quant!r}", hint="one of " + ", ".join(QUANT_CHOICES))
    model_dir, output = Path(model_dir), Path(output)
    config = read_config(model_dir)
    arch_of(config, str(model_dir))
    report = GGUFReport(path=output, quant=quant, tensors=0)
    if quant in QUANTS:
        plan = tensor_plan(model_dir, config, "f32")
        why = check_fallbacks(plan, quant, allow_fallback)
    with atomic_file(output) as tmp:
        if quant in FLOAT_TYPES:
            write_float_gguf(model_dir, tmp, quant)
        else:
            with tempfile.TemporaryDirectory(dir=output.parent) as work:
                src = Path(work) / "float.gguf"
                write_float_gguf(model_dir, src, intermediate_type(model_dir))
                llama_quantize(src, tmp, quant)
        types = tensor_types(tmp)
    if quant in QUANTS:
        report.fallbacks = {n: f"{types[n]} ({reason})" for n, reason in why.items()}
        report.warnings += [f"{n} stored as {t}" for n, t in report.fallbacks.items()]
    report.tensors = len(types)
    report.types = dict(Counter(types.values()))
    return report
