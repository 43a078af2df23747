"""Exact parameter shapes of a Qwen2/Qwen3 model from its config.json, without reading weights.

Where the config comes from, in order: a local model folder; the Hugging Face cache (no network);
the configs shipped in mlx_eden/assets/qwen_configs/ for the known Qwen models (Qwen2.5 0.5B-72B
incl. Coder, Qwen3 0.6B-32B), matched by name, e.g. "Qwen/Qwen2.5-Coder-7B-Instruct" or
"mlx-community/Qwen2.5-32B-Instruct-4bit" (an MLX "-Nbit" name implies N-bit, group 64).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..dtypes import checkpoint_dtype
from ..errors import UserError
from ..qwen import PROJECTIONS
from ..safeio import read_json_object

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "qwen_configs"


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide memory. head_dim follows mlx-lm: Qwen3 reads it from the
    config, Qwen2 derives hidden/heads."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    qk_norm: bool
    quant_bits: int | None = None   # already quantized (an MLX-quantized folder)
    quant_group: int | None = None
    dtype: str = "bfloat16"         # the checkpoint's float dtype (what model.dtype: auto keeps)

    def projection(self, name: str) -> tuple[int, int]:
        """(in, out) features of a decoder-layer projection."""
        d, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, \
            self.intermediate
        return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
                "gate_proj": (d, i), "up_proj": (d, i), "down_proj": (i, d)}[name]

    def layer_tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of one decoder layer's tensors; matrices are (out, in) as stored."""
        out = []
        for p in PROJECTIONS:
            i, o = self.projection(p)
            out.append((p, (o, i)))
        if self.qkv_bias:
            out += [(f"{p}.bias", (self.projection(p)[1],)) for p in PROJECTIONS[:3]]
        if self.qk_norm:
            out += [("q_norm", (self.head_dim,)), ("k_norm", (self.head_dim,))]
        out += [("input_layernorm", (self.hidden,)), ("post_attention_layernorm", (self.hidden,))]
        return out

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every tensor of the model, with the embedding and (when untied) the lm_head."""
        out = [("embed_tokens", (self.vocab, self.hidden))]
        for n in range(self.layers):
            out += [(f"layers.{n}.{name}", shape) for name, shape in self.layer_tensors()]
        out.append(("norm", (self.hidden,)))
        if not self.tied:
            out.append(("lm_head", (self.vocab, self.hidden)))
        return out

    @property
    def params_total(self) -> int:
        total = 0
        for _, shape in self.tensors():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total


def shape_from_config(cfg: dict) -> ModelShape:
    """A ModelShape from a config.json dict (Qwen2 / Qwen3 families)."""
    try:
        return _shape(cfg)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise UserError(f"config.json lacks or garbles {e}", key="model.path",
                        hint="restore the model's config.json") from None


def _shape(cfg: dict) -> ModelShape:
    mtype = cfg.get("model_type", "")
    if mtype not in ("qwen2", "qwen3"):
        raise UserError(f"the memory planner knows Qwen2 and Qwen3 models, not {mtype!r}",
                        key="model.path")
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg["head_dim"]) if mtype == "qwen3" and cfg.get("head_dim") else \
        int(cfg["hidden_size"]) // heads
    q = cfg.get("quantization") or {}
    return ModelShape(
        model_type=mtype, hidden=int(cfg["hidden_size"]),
        intermediate=int(cfg["intermediate_size"]), layers=int(cfg["num_hidden_layers"]),
        heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads), head_dim=head_dim,
        vocab=int(cfg["vocab_size"]), tied=bool(cfg.get("tie_word_embeddings", mtype == "qwen2")),
        qkv_bias=mtype == "qwen2" or bool(cfg.get("attention_bias", False)),
        qk_norm=mtype == "qwen3", quant_bits=q.get("bits"), quant_group=q.get("group_size"),
        dtype=checkpoint_dtype(cfg))


# --------------------------------------------------------------------------- finding the config

_NAME = re.compile(r"(qwen2\.5|qwen3)(?:-coder)?-(\d+(?:\.\d+)?)b", re.IGNORECASE)
_BITS = re.compile(r"-(\d)-?bit\b", re.IGNORECASE)


def known_models() -> list[str]:
    return sorted(p.stem for p in ASSETS.glob("*.json"))


def packaged_config(name: str) -> tuple[dict, str] | None:
    """The shipped config for a Qwen model name (any owner, Base/Instruct/Coder, MLX quantized
    names), or None."""
    m = _NAME.search(name.split("/")[-1])
    if not m:
        return None
    key = f"{m.group(1).lower()}-{m.group(2)}b"
    path = ASSETS / f"{key}.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    source = f"packaged config {key}"
    bits = _BITS.search(name)
    if bits and "quantization" not in cfg:
        cfg["quantization"] = {"bits": int(bits.group(1)), "group_size": 64}
        source += f" ({bits.group(1)}-bit, group 64, from the name)"
    return cfg, source


def _cached_config(repo: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) else None


def load_config(path: str, revision: str | None = None) -> tuple[dict, str]:
    """(config.json dict, where it came from) for a recipe's model.path. Never downloads."""
    if not path:
        raise UserError("no model given", key="model.path")
    local = Path(path).expanduser()
    if local.is_dir():
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            raise UserError("model folder has no config.json", file=str(local))
        return read_json_object(cfg_file, "config.json"), str(cfg_file)
    if path.count("/") == 1 and not path.startswith((".", "/")):
        cached = _cached_config(path, revision)
        if cached is not None:
            return read_json_object(cached, "config.json"), f"{cached} (Hugging Face cache)"
    known = packaged_config(path)
    if known is not None:
        return known
    raise UserError(f"no config.json for {path!r} without downloading", key="model.path",
                    hint="use a local model folder, or one of the known models: "
                         + ", ".join(known_models()))
