"""Write a Qwen2/Qwen3 model folder as GGUF with gguf-py: the metadata llama.cpp needs, the
byte-level BPE vocabulary (unused ids padded), and the tensors in float32/float16/bfloat16.

Why not llama.cpp's convert_hf_to_gguf.py: it needs torch and a source checkout, and mlx-lm's
own exporter refuses qwen2. Names and keys follow convert_hf_to_gguf's Qwen2Model/Qwen3Model;
the HF → GGUF tensor names come from gguf-py's own name map. K-quants are made afterwards by
llama.cpp's quantizer (quantize.py), never by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..qwen import SPARE_ROW_NAME, SPLIT_PATTERN
from .files import read_config, read_tensors

FLOAT_TYPES = ("f32", "f16", "bf16")

# A header key naming the writer, so `--output` may replace our own GGUF without --overwrite.
WRITER_KEY, WRITER = "general.source.writer", "mlx-eden"



def require_gguf():
    try:
        import gguf
    except ImportError:
        raise UserError("GGUF export needs the gguf extra",
                        hint="pip install -e '.[gguf]' in the clone") from None
    return gguf


@dataclass
class TensorPlan:
    """One tensor to write: HF name → GGUF name, shape as stored (numpy order), GGUF type."""

    hf_name: str
    name: str
    shape: tuple[int, ...]
    qtype: object


@dataclass
class GGUFReport:
    path: Path
    quant: str
    tensors: int
    types: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def arch_of(config: dict, where: str, *, quantized_ok: bool = False):
    """gguf-py's architecture for a Qwen config, or a clear refusal. `quantized_ok`: the caller
    needs only the architecture and tensor names (a LoRA GGUF), not the weights."""
    gguf = require_gguf()
    archs = {"qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}
    mt = config.get("model_type")
    if mt not in archs:
        raise UserError(f"model_type {mt!r} is not supported for GGUF export (qwen2, qwen3)",
                        file=where)
    if not quantized_ok and ("quantization" in config or "quantization_config" in config):
        raise UserError("the folder holds quantized weights", file=where,
                        hint="de-quantize first: eden-mlx fuse --model DIR --output FLOAT_DIR")
    return archs[mt]


def rope_theta(config: dict) -> float:
    """rope base: top-level rope_theta, or transformers 5's rope_parameters."""
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def write_hparams(w, config: dict, where: str) -> None:
    """Architecture keys, as convert_hf_to_gguf's TextModel.set_gguf_parameters writes them."""
    gguf = require_gguf()
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config.get("max_position_embeddings", 32768))
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    w.add_rope_freq_base(rope_theta(config))
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    if config.get("head_dim"):
        w.add_key_length(config["head_dim"])
        w.add_value_length(config["head_dim"])
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind in ("yarn", "linear") and scaling.get("factor"):
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN if kind == "yarn"
                                else gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
        if kind == "yarn":
            w.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
    elif kind not in (None, "default"):
        raise UserError(f"rope_scaling type {kind!r} has no GGUF equivalent here", file=where,
                        key="rope_scaling")


def vocab_tokens(model_dir: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token strings and types for every embedding row; rows no token uses become [PADi]
    (UNUSED), as convert_hf_to_gguf does for Qwen's padded vocabulary."""
    gguf = require_gguf()
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError("GGUF export needs tokenizer.json", file=str(model_dir))
    tj = json.loads(path.read_text(encoding="utf-8"))
    _check_pre_tokenizer(tj, str(path))
    tokens = [SPARE_ROW_NAME.format(i) for i in range(n_vocab)]
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    entries = [(i, t, int(gguf.TokenType.NORMAL)) for t, i in tj["model"]["vocab"].items()]
    for a in tj.get("added_tokens", []):
        special = a.get("special") or (a["content"].startswith("<|") and
                                        a["content"].endswith("|>"))
        entries.append((a["id"], a["content"], int(gguf.TokenType.CONTROL if special
                                                   else gguf.TokenType.USER_DEFINED)))
    for i, text, kind in entries:
        if i >= n_vocab:
            raise UserError(f"token id {i} ({text!r}) is beyond the embedding's {n_vocab} rows",
                            file=str(path))
        tokens[i], types[i] = text, kind
    return tokens, types


def _check_pre_tokenizer(tj: dict, where: str) -> None:
    """llama.cpp re-implements the pre-tokenizer by name ("qwen2"): refuse a tokenizer whose
    split differs, since its GGUF would silently tokenize differently."""
    model = tj.get("model", {})
    if model.get("type") != "BPE" or (tj.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserError("only byte-level BPE tokenizers (Qwen's) are supported", file=where)
    pre = tj.get("pre_tokenizer") or {}
    splits = [p for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Split"]
    pattern = splits[0].get("pattern", {}).get("Regex") if splits else None
    if pattern != SPLIT_PATTERN:
        raise UserError("the tokenizer's pre-tokenizer is not Qwen2's, so llama.cpp's 'qwen2' "
                        "pre-tokenizer would split text differently", file=where)


def write_vocab(w, model_dir: Path, n_vocab: int) -> None:
    gguf = require_gguf()
    tokens, types = vocab_tokens(model_dir, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise UserError("the tokenizer has no BPE merges", file=str(model_dir))
    special.add_to_gguf(w, quiet=True)  # merges, bos/eos/pad ids, add_bos, chat template
    if special.chat_template is None:
        from .files import chat_template

        tpl = chat_template(model_dir)  # transformers 5 keeps it in chat_template.jinja
        if tpl:
            w.add_chat_template(tpl)


def names_map(arch, n_layers: int):
    """gguf-py's HF → GGUF tensor name map for this architecture and depth."""
    return require_gguf().get_tensor_name_map(arch, n_layers)


def tensor_plan(model_dir: Path, config: dict, out_type: str) -> list[TensorPlan]:
    """What to write, from the safetensors headers only (no tensor data is read)."""
    from gguf.utility import SafetensorsLocal

    gguf = require_gguf()
    names = names_map(arch_of(config, str(model_dir)), config["num_hidden_layers"])
    matrix_type = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
                   "bf16": gguf.GGMLQuantizationType.BF16}[out_type]
    plan = []
    for f in sorted(model_dir.glob("*.safetensors")):
        with SafetensorsLocal(f) as tensors:
            for hf, t in tensors.items():
                if hf == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp reuses token_embd for a tied head
                name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise UserError(f"tensor {hf} has no GGUF name for {config['model_type']}",
                                    file=str(f))
                # Norms and biases stay float32, as llama.cpp expects.
                qtype = matrix_type if len(t.shape) >= 2 else gguf.GGMLQuantizationType.F32
                plan.append(TensorPlan(hf, name, tuple(t.shape), qtype))
    return plan


def _nbytes(shape, qtype) -> int:
    gguf = require_gguf()
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * type_size


def write_float_gguf(model_dir: str | Path, path: Path, out_type: str) -> list[TensorPlan]:
    """Write `model_dir` as a float GGUF at `path`; tensors are streamed one at a time (header
    first, then each tensor converted and written), so memory stays at one tensor."""
    gguf = require_gguf()
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    arch = arch_of(config, str(model_dir))
    plan = tensor_plan(model_dir, config, out_type)
    n_vocab = next(p.shape[0] for p in plan if p.name == "token_embd.weight")
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_string(WRITER_KEY, WRITER)  # early in the header: `check_target` looks for it
    w.add_name(model_dir.name)
    write_hparams(w, config, str(model_dir / "config.json"))
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "bf16": gguf.LlamaFileType.MOSTLY_BF16}[out_type])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_vocab(w, model_dir, n_vocab)
    for p in plan:
        w.add_tensor_info(p.name, p.shape, np.dtype(np.float32), _nbytes(p.shape, p.qtype),
                          raw_dtype=p.qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    planned = iter(plan)
    wanted = {p.hf_name for p in plan}
    for hf, array in read_tensors(model_dir):
        if hf not in wanted:
            continue
        p = next(planned)
        assert p.hf_name == hf, (p.hf_name, hf)  # same file order as the header was written
        data = np.ascontiguousarray(array, dtype=np.float32)
        w.write_tensor_data(gguf.quants.quantize(data, p.qtype))
    w.close()
    return plan
