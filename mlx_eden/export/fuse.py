"""`eden-mlx fuse`: base + adapter → a Hugging Face-layout folder that mlx-lm and transformers
both load (sharded safetensors in HF names, config.json, tokenizer files with the chat template).

Fusing always goes through de-quantized float32 weights; `--requantize` is an explicit opt-in
and reports, measured on the probe prompts, how much it moves the logits next to how much the
adapter itself moves them, so a fine-tune rounded away is visible, not silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters import read_adapter_config
from ..errors import UserError
from ..hub import resolve_model
from ..safeio import atomic_dir
from ..tokens import add_to_folder, read_tokens
from ..units import GIB
from .files import chat_template, copy_tokenizer, read_config

PROVENANCE = "eden_fuse.json"  # the base and adapter a fused folder was made from
DTYPE_NAMES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32",
               "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


@dataclass
class FuseReport:
    output: Path
    dtype: str
    files: list[str]
    adapter: str | None = None
    requantized: dict | None = None
    warnings: list[str] = field(default_factory=list)


def default_dtype(config: dict) -> str:
    """The base's own float type; bfloat16 for a quantized base (what it was made from)."""
    stored = config.get("torch_dtype") or config.get("dtype")
    if "quantization" in config or stored not in ("bfloat16", "float16", "float32"):
        return "bfloat16"
    return stored


def check_adapter_fits(adapter_dir: Path, config: dict) -> dict:
    """The adapter's config, after checking it was trained on a model of this depth."""
    cfg = read_adapter_config(adapter_dir)
    layers = cfg.get("eden", {}).get("model_layers")
    if layers is not None and layers != config.get("num_hidden_layers"):
        raise UserError(f"the adapter was trained on a {layers}-layer model, the base has "
                        f"{config.get('num_hidden_layers')}", file=str(adapter_dir),
                        hint="pass the base model the adapter was trained on")
    return cfg


def output_config(config: dict, dtype: str, quantization: dict | None) -> dict:
    """config.json of the fused folder: no MLX quantization block unless re-quantized."""
    out = {k: v for k, v in config.items()
           if k not in ("quantization", "quantization_config", "_name_or_path")}
    out["torch_dtype"] = out["dtype"] = dtype
    if quantization:
        out["quantization"] = out["quantization_config"] = quantization
    return out


def fuse(model: str, adapter: str | Path | None, output: str | Path, *, dtype: str | None = None,
         requantize: int | None = None, group_size: int = 64,
         max_shard_gb: float = 5.0) -> FuseReport:
    """Merge `adapter` into `model` and write the folder `output` (atomically)."""
    model_dir = resolve_model(model)
    config = read_config(model_dir)
    dtype = DTYPE_NAMES[dtype] if dtype else default_dtype(config)
    report = FuseReport(output=Path(output), dtype=dtype, files=[])
    if adapter is not None:
        cfg = check_adapter_fits(Path(adapter), config)
        report.adapter = f"{cfg.get('fine_tune_type', 'lora')} r={cfg['lora_parameters']['rank']}"
    from ..backends.mlx import fuse as F  # after the checks: a bad path fails fast

    fused, _ = F.fused_model(model_dir, adapter, dtype)
    quantization = None
    if requantize:
        fused, report.requantized = _requantize(fused, config, model_dir, adapter, requantize,
                                                group_size)
        quantization = {"group_size": group_size, "bits": requantize}
        report.warnings.append(_requantize_warning(report.requantized))
    if chat_template(model_dir) is None:
        report.warnings.append("the base has no chat template; the fused folder has none either")
    with atomic_dir(output, command="fuse") as tmp:
        report.files = F.save_weights(fused, tmp, int(max_shard_gb * GIB))
        (tmp / "config.json").write_text(json.dumps(output_config(config, dtype, quantization),
                                                    indent=2))
        report.files += copy_tokenizer(model_dir, tmp)
        added = read_tokens(adapter) if adapter is not None else None
        if added:
            add_to_folder(tmp, added)  # needs config.json (rows) written above
        if adapter is not None:
            (tmp / PROVENANCE).write_text(json.dumps(
                {"model": str(Path(model_dir).resolve()), "adapter": str(Path(adapter).resolve())},
                indent=2))
            report.files.append(PROVENANCE)
    return report


def provenance(fused_dir: str | Path) -> dict | None:
    """{"model", "adapter"} a fused folder was made from (what `export gguf --verify` checks the
    file against by default), or None for a folder fuse did not write."""
    path = Path(fused_dir) / PROVENANCE
    return json.loads(path.read_text()) if path.is_file() else None


def _requantize(fused, config, model_dir, adapter, bits, group_size):
    """Quantize the fused model and measure what that costs against what the adapter does."""
    from ..backends.mlx import fuse as F
    from ..backends.mlx import inference
    from .probe import compare, probe_ids

    prompts = probe_ids(model_dir)
    exact = F.model_logits(fused, prompts)
    base = inference.folder_logits(model_dir, prompts)
    fused, _ = F.requantize(fused, config, bits, group_size)
    quantized = F.model_logits(fused, prompts)
    return fused, {"bits": bits, "group_size": group_size,
                   "change": compare(quantized, exact).as_dict(),
                   "adapter_effect": compare(exact, base).as_dict() if adapter else None}


def _requantize_warning(r: dict) -> str:
    text = (f"re-quantized to {r['bits']} bits: logits moved by mean |Δ| "
            f"{r['change']['mean_abs']:.3g} (argmax agreement {r['change']['argmax_agree']:.0%})")
    if r["adapter_effect"]:
        text += (f", while the adapter itself moves them by {r['adapter_effect']['mean_abs']:.3g}"
                 " — compare the two before shipping")
    return text + "; the folder is MLX-only (transformers and GGUF export need a float folder)"
