"""Our adapters on disk as plain numpy, grouped by the module they adapt.

mlx-lm layout (what `eden-mlx train` writes): `model.layers.N.self_attn.q_proj.lora_a` (in, r),
`.lora_b` (r, out), and for DoRA `.m` (out,); the scale on B@A is lora_parameters.scale.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config
from ..errors import UserError

KEY = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.(lora_a|lora_b|m)$")


@dataclass
class Adapter:
    """An adapter: its config (mlx-lm schema + our "eden" block) and per-module tensors."""

    config: dict
    modules: dict[str, dict[str, np.ndarray]]  # "model.layers.N.self_attn.q_proj" → tensors

    @property
    def rank(self) -> int:
        return int(self.config["lora_parameters"]["rank"])

    @property
    def scale(self) -> float:
        return float(self.config["lora_parameters"]["scale"])

    @property
    def dora(self) -> bool:
        return self.config.get("fine_tune_type", "lora") == "dora"

    def layers(self) -> list[int]:
        return sorted({int(KEY.match(f"{m}.lora_a").group(1)) for m in self.modules})

    def projections(self) -> list[str]:
        return sorted({m.rsplit(".", 1)[1] for m in self.modules})


def load_adapter(directory: str | Path) -> Adapter:
    from safetensors.numpy import load_file

    directory = Path(directory)
    config = read_adapter_config(directory)
    if config.get("fine_tune_type", "lora") not in ("lora", "dora"):
        raise UserError(f"a {config['fine_tune_type']} fine-tune is not an adapter",
                        file=str(directory / ADAPTER_CONFIG))
    if "loftq" in config.get("eden", {}):
        raise UserError("a LoftQ adapter corrects its own quantized base, which a PEFT or "
                        "llama.cpp LoRA cannot carry", file=str(directory / ADAPTER_CONFIG),
                        hint="merge it with `eden-mlx fuse` and export the fused folder")
    path = directory / ADAPTER_WEIGHTS
    if not path.is_file():
        raise UserError(f"no {ADAPTER_WEIGHTS}", file=str(directory))
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(path)).items():
        m = KEY.match(key)
        if not m:
            raise UserError(f"unexpected tensor {key}", file=str(path),
                            hint="expected model.layers.N.<self_attn|mlp>.<proj>.lora_a/lora_b")
        modules.setdefault(key.rsplit(".", 1)[0], {})[m.group(4)] = value
    for name, t in modules.items():
        if "lora_a" not in t or "lora_b" not in t:
            raise UserError(f"{name} lacks lora_a or lora_b", file=str(path))
    return Adapter(config, modules)


def projection_dims(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each Qwen projection, from a model's config.json."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads", heads) * head_dim
    return {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
            "o_proj": (heads * head_dim, hidden), "gate_proj": (hidden, inter),
            "up_proj": (hidden, inter), "down_proj": (inter, hidden)}


def check_shapes(adapter: Adapter, config: dict, where: str) -> None:
    """Refuse an adapter whose matrices do not fit the base (another model size): llama.cpp would
    load it and crash or compute garbage."""
    dims = projection_dims(config)
    for name, t in sorted(adapter.modules.items()):
        want = dims.get(name.rsplit(".", 1)[1])
        got = (t["lora_a"].shape[0], t["lora_b"].shape[-1])
        if want is not None and got != want:
            raise UserError(f"{name} maps {got[0]} -> {got[1]} features, the base model "
                            f"{want[0]} -> {want[1]}", file=where,
                            hint="pass the base model the adapter was trained on")


def save_adapter(directory: Path, adapter: Adapter) -> None:
    """Write adapters.safetensors + adapter_config.json (mlx-lm loads them as they are)."""
    from safetensors.numpy import save_file

    flat = {f"{name}.{k}": np.ascontiguousarray(v, dtype=np.float32)
            for name, t in adapter.modules.items() for k, v in t.items()}
    save_file(flat, str(directory / ADAPTER_WEIGHTS), metadata={"format": "mlx"})
    (directory / ADAPTER_CONFIG).write_text(json.dumps(adapter.config, indent=2))
