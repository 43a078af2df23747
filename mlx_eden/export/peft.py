"""Our adapters ⇄ PEFT (what `peft.PeftModel.from_pretrained` and vLLM's `--lora-modules` load).

    ours (mlx-lm)                                   PEFT
    model.layers.N.self_attn.q_proj.lora_a (in, r)  base_model.model.model.layers.N.self_attn
                                                      .q_proj.lora_A.weight (r, in)
    ...lora_b (r, out)                              ...lora_B.weight (out, r)
    ...m (out,)  (DoRA)                             ...lora_magnitude_vector (out,)
    lora_parameters.scale                           lora_alpha / r  (/ sqrt(r) with use_rslora)

mlx-lm adapts the *last* `num_layers` layers with one set of projections; a PEFT adapter that
cannot be said that way is refused rather than loaded onto the wrong layers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ..adapters import MODULE_PARENT, module_keys
from ..errors import UserError
from ..safeio import atomic_dir
from ..tokens import TOKEN_ROWS, read_tokens
from .adapter_io import Adapter, load_adapter, save_adapter
from .files import read_config

PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
PEFT_KEY = re.compile(r"^base_model\.model\.(model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+))\."
                      r"(lora_A\.weight|lora_B\.weight|lora_magnitude_vector(?:\.weight)?)$")
TOKEN_LEAF = "token_adapter.trainable_tokens_delta"
LEAF = {"lora_a": "lora_A.weight", "lora_b": "lora_B.weight", "m": "lora_magnitude_vector"}


def peft_alpha(adapter: Adapter) -> tuple[float, bool]:
    """(lora_alpha, use_rslora) reproducing the adapter's scale exactly."""
    eden, r = adapter.config.get("eden", {}), adapter.rank
    if "alpha" in eden:
        alpha, rslora = float(eden["alpha"]), bool(eden.get("rslora"))
        if math.isclose(alpha / (math.sqrt(r) if rslora else r), adapter.scale, rel_tol=1e-6):
            return alpha, rslora
    return adapter.scale * r, False  # an adapter from plain mlx-lm knows only its scale


def peft_config(adapter: Adapter, base_model: str | None) -> dict:
    alpha, rslora = peft_alpha(adapter)
    layers = adapter.layers()
    total = adapter.config.get("eden", {}).get("model_layers")
    everywhere = total is not None and layers == list(range(total))
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": adapter.rank, "lora_alpha": alpha,
        "use_rslora": rslora, "use_dora": adapter.dora, "target_modules": adapter.projections(),
        "layers_to_transform": None if everywhere else layers,
        "lora_dropout": float(adapter.config["lora_parameters"].get("dropout", 0.0)),
        "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "init_lora_weights": True, "inference_mode": True,
        "base_model_name_or_path": base_model or adapter.config.get("model"),
    }


def export_peft(adapter_dir: str | Path, output: str | Path, base_model: str | None = None) -> dict:
    """Write `adapter_dir` as a PEFT folder at `output`; returns its adapter_config."""
    from safetensors.numpy import save_file

    adapter = load_adapter(adapter_dir)
    config = peft_config(adapter, base_model)
    weights = {f"{PREFIX}{module}.{LEAF[k]}": np.ascontiguousarray(v.T if v.ndim == 2 else v,
                                                                  dtype=np.float32)
               for module, t in adapter.modules.items() for k, v in t.items()}
    _add_token_rows(adapter_dir, config, weights)
    with atomic_dir(output, command="export peft") as tmp:
        save_file(weights, str(tmp / PEFT_WEIGHTS), metadata={"format": "pt"})
        (tmp / PEFT_CONFIG).write_text(json.dumps(config, indent=2))
    return config


def _add_token_rows(adapter_dir, config: dict, weights: dict) -> None:
    """New-token rows (tokens.add) as PEFT's trainable tokens (LoraConfig
    trainable_token_indices, peft >= 0.15): per module, the rows' full values (PEFT's
    "trainable_tokens_delta" holds the rows themselves, index_copy'd into the weight); an untied
    head gets its own entry, a tied one shares the embedding's."""
    from safetensors.numpy import load_file

    info = read_tokens(adapter_dir)
    if info is None:
        return
    rows = load_file(str(Path(adapter_dir) / TOKEN_ROWS))
    ids = list(range(info["first_id"], info["first_id"] + len(info["tokens"])))
    config["trainable_token_indices"] = {"embed_tokens": ids}
    weights[f"{PREFIX}model.embed_tokens.{TOKEN_LEAF}"] = rows["embed"].astype(np.float32)
    if "head" in rows:
        config["trainable_token_indices"]["lm_head"] = ids
        weights[f"{PREFIX}lm_head.{TOKEN_LEAF}"] = rows["head"].astype(np.float32)


def _read_peft(peft_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    cfg_path, w_path = peft_dir / PEFT_CONFIG, peft_dir / PEFT_WEIGHTS
    if not cfg_path.is_file():
        raise UserError("not a PEFT adapter folder (no adapter_config.json)", file=str(peft_dir))
    if not w_path.is_file():
        raise UserError(f"no {PEFT_WEIGHTS}", file=str(peft_dir),
                        hint="re-save it with save_pretrained(safe_serialization=True)")
    cfg = json.loads(cfg_path.read_text())
    problems = []
    if cfg.get("peft_type") != "LORA":
        problems.append(f"peft_type {cfg.get('peft_type')} (only LORA)")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {cfg['modules_to_save']} (full weights, not LoRA)")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        problems.append("trained biases")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        problems.append("per-module rank_pattern/alpha_pattern")
    if cfg.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out (GPT-2 style Conv1D)")
    if problems:
        raise UserError("cannot import: " + "; ".join(problems), file=str(cfg_path))
    return cfg, load_file(str(w_path))


def _modules(weights: dict, where: str) -> dict[str, dict[str, np.ndarray]]:
    modules: dict[str, dict[str, np.ndarray]] = {}
    leaf = {"lora_A.weight": "lora_a", "lora_B.weight": "lora_b"}
    for key, value in weights.items():
        m = PEFT_KEY.match(key)
        if not m or m.group(4) not in MODULE_PARENT:
            raise UserError(f"unsupported tensor {key}", file=where,
                            hint="only the q/k/v/o/gate/up/down projections of decoder layers")
        kind = leaf.get(m.group(5), "m")
        modules.setdefault(m.group(1), {})[kind] = value.T if kind != "m" else value
    return modules


def _check_tensors(modules: dict, r: int, dora: bool, where: str) -> None:
    """Every module has A and B of rank r (and a magnitude for DoRA): a mix would load wrong."""
    for name, t in modules.items():
        need = {"lora_a", "lora_b"} | ({"m"} if dora else set())
        if set(t) != need:
            raise UserError(f"{name} has {sorted(t)}, expected {sorted(need)}", file=where)
        if t["lora_a"].shape[1] != r or t["lora_b"].shape[0] != r:
            raise UserError(f"{name} has rank {t['lora_a'].shape[1]}, the config says r={r}",
                            file=where)


def _model_layers(cfg: dict, model: str | Path | None, layers: list[int]) -> int:
    """Depth of the base: from --model, else the PEFT config's local base, else (when PEFT
    adapted every layer) the highest adapted layer + 1."""
    for candidate in (model, cfg.get("base_model_name_or_path")):
        if candidate and (Path(candidate) / "config.json").is_file():
            return int(read_config(candidate)["num_hidden_layers"])
    if cfg.get("layers_to_transform") is None:
        return max(layers) + 1
    raise UserError("the PEFT adapter covers only some layers and the base is unknown",
                    hint="pass --model BASE so the layers can be placed")


def import_peft(peft_dir: str | Path, output: str | Path, model: str | Path | None = None) -> dict:
    """Write the PEFT adapter `peft_dir` in our (mlx-lm) format at `output`."""
    peft_dir = Path(peft_dir)
    cfg, weights = _read_peft(peft_dir)
    modules = _modules(weights, str(peft_dir / PEFT_WEIGHTS))
    r = int(cfg["r"])
    _check_tensors(modules, r, bool(cfg.get("use_dora")), str(peft_dir / PEFT_WEIGHTS))
    layers = sorted({int(name.split(".")[2]) for name in modules})
    total = _model_layers(cfg, model, layers)
    if layers != list(range(total - len(layers), total)):
        raise UserError(f"the adapter covers layers {layers} of {total}; mlx-lm adapters "
                        "cover the last N layers", file=str(peft_dir / PEFT_CONFIG))
    projections = sorted({name.rsplit(".", 1)[1] for name in modules})
    per_layer = {i: sorted(n.rsplit(".", 1)[1] for n in modules if n.split(".")[2] == str(i))
                 for i in layers}
    if any(p != projections for p in per_layer.values()):
        raise UserError("layers adapt different projections; mlx-lm needs one set for all",
                        file=str(peft_dir / PEFT_CONFIG))
    rslora, alpha = bool(cfg.get("use_rslora")), float(cfg["lora_alpha"])
    targets = [p for p in MODULE_PARENT if p in projections]
    config = {
        "fine_tune_type": "dora" if cfg.get("use_dora") else "lora",
        "num_layers": len(layers),
        "lora_parameters": {"rank": r, "scale": alpha / (math.sqrt(r) if rslora else r),
                            "dropout": float(cfg.get("lora_dropout", 0.0)),
                            "keys": module_keys(targets)},
        "model": cfg.get("base_model_name_or_path"),
        "eden": {"alpha": alpha, "rslora": rslora, "targets": targets,
                 "layers": -1 if len(layers) == total else len(layers), "model_layers": total},
    }
    with atomic_dir(output, command="import peft") as tmp:
        save_adapter(tmp, Adapter(config, modules))
    return config
