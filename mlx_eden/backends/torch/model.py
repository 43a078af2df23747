"""Model loading (transformers), adapters (peft) and the loss on PyTorch CPU.

The semantics mirror backends/mlx/model.py so the two backends compute the same numbers: adapters
start from `lora_a_init` (lora_b zeros), a packed row attends block-diagonally, positions run along
the row (not restarted per sample; see `attention_mask`), and the loss is the summed
cross-entropy over trained targets, divided by the caller.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ...adapters import adapted_layers, lora_a_init
from ...dtypes import cpu_bf16_flags, resolve_torch_dtype
from ...errors import UserError
from ...recipe import Recipe
from . import attention
from .dropout import use_word_dropout

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HALF_SUPPORTED = {"bfloat16": "_is_mkldnn_bf16_supported", "float16": "_is_mkldnn_fp16_supported"}


def cpu_threads(requested: int | None) -> int:
    """train.num_threads, else the cores this process may run on (cgroup/taskset aware)."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def compute_dtype(requested: str) -> tuple[torch.dtype, str, str | None]:
    """(dtype the base weights are stored and run in, why, a note when the CPU cannot run the
    requested one fast). Adapters stay float32 (peft upcasts them), so their gradients and the
    optimizer state are float32 too.

    `auto` is bfloat16 where the CPU reports native bf16 (dtypes.resolve_torch_dtype) and oneDNN
    agrees. bf16/fp16 matmuls are fast only where oneDNN has native kernels (AVX512-BF16, AMX,
    AVX512-FP16); elsewhere they are emulated and slower than float32, so we fall back and say so.
    Storing the base in bf16 (as MLX's set_dtype does) rather than autocasting a float32 base
    halves its memory and was faster: 172 vs 88-100 GFLOP/s for a 512x512x1536 matmul on one AMX
    core, because autocast re-casts every weight on every call (and keeps the bf16 copies for
    backward); on the 38M model (2 x 512 tokens, one thread, busy machine) the median step took
    2.5 s with a bf16 base, 3.2 s autocast over fp32, 5.7 s autocast over bf16, 2.7 s in fp32."""
    half = "bfloat16" if requested == "auto" else requested
    native = half != "float32" and _native(half)
    name, why = resolve_torch_dtype(requested, cpu_bf16_flags() if native else [])
    if name == "float32" or native:
        return DTYPES[name], why, None
    return torch.float32, why, f"{name} has no native kernels on this CPU; computing in float32"


def _native(name: str) -> bool:
    check = getattr(torch.ops.mkldnn, _HALF_SUPPORTED[name], None)
    return bool(check is not None and check())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def load_base(path: Path, spec, dtype: torch.dtype):
    """The float base with transformers: safetensors only, remote code only when allowed.

    QLoRA (a quantized base) is MLX-only: there is no maintained 4-bit CPU training path in torch."""
    config = json.loads((Path(path) / "config.json").read_text())
    if "quantization" in config or "quantization_config" in config:
        raise UserError("the torch backend trains a float base, and this model folder is "
                        "quantized", file=str(path), key="model.path",
                        hint="point model.path at the float model, or use --backend mlx")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # bf16: attention as blocked bf16 matmuls, 1.5-2.6x faster than sdpa's CPU flash kernel
    # (backends/torch/attention.py); float32 keeps sdpa (no faster blocked at long widths).
    attn = "sdpa" if dtype == torch.float32 else attention.register()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, use_safetensors=True, attn_implementation=attn,
            trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model with transformers: {str(e).splitlines()[0]}",
                        file=str(path), hint="the torch backend needs *.safetensors weights; set "
                        "model.trust_remote_code: true only for code you trust") from None
    return model, config


def add_adapters(model, recipe: Recipe, token_indices: dict | None = None):
    """Wrap `model` with peft LoRA/DoRA on the recipe's projections and layers, then set our
    seeded init (identical to the MLX backend's). Returns (peft model, adapted module names)."""
    from peft import LoraConfig, get_peft_model

    a = recipe.adapter
    n_layers = model.config.num_hidden_layers
    layers = list(adapted_layers(n_layers, a.layers))
    config = LoraConfig(
        r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, use_rslora=a.rslora,
        use_dora=a.type == "dora", target_modules=list(a.target_names), bias="none",
        layers_to_transform=None if len(layers) == n_layers else layers,
        trainable_token_indices=token_indices, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation chatter from peft/transformers internals
        peft_model = get_peft_model(model, config)
    use_word_dropout(peft_model)  # bulk-drawn masks: 7% of a step faster (backends/torch/dropout.py)
    names = []
    with torch.no_grad():
        for name, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                lora_a, lora_b = module.lora_A["default"].weight, module.lora_B["default"].weight
                init = lora_a_init(name, lora_a.shape[1], a.rank, recipe.train.seed)  # (in, r)
                lora_a.copy_(torch.from_numpy(init).T)  # peft keeps (r, in)
                lora_b.zero_()
                names.append(name)
    return peft_model, names


def enable_checkpointing(lm) -> None:
    """Recompute each decoder layer in backward (transformers' own per-layer checkpointing).
    Non-reentrant: works with a frozen embedding and replays dropout with the same RNG state."""
    kwargs = {"use_reentrant": False}
    if hasattr(lm, "activation_checkpointing_enable"):  # the name from transformers 5.x
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def causal_lm(peft_model):
    """The transformers *ForCausalLM under the peft wrapper (has .model and .lm_head)."""
    return peft_model.base_model.model


def attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool, True = may attend: causal, and only within one sample of a packed row.

    Positions run 0..L-1 along the row, as in the MLX backend: RoPE scores depend only on the
    distance between query and key, and the mask keeps every attended pair inside one sample, so
    the result equals the sample run on its own up to float rounding. Using the same positions as
    MLX keeps the parity test like-for-like."""
    L = segments.shape[1]
    idx = torch.arange(L)
    causal = idx[:, None] >= idx[None, :]
    same = segments[:, :, None] == segments[:, None, :]
    return (same & causal).unsqueeze(1)


def _ce_sum(lm_head, h, targets, weights):
    logits = lm_head(h).float()  # (N, V)
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()


def loss_sum(peft_model, inputs, targets, weights, segments, *, packed: bool,
             chunk: int) -> torch.Tensor:
    """Summed cross-entropy over trained targets (the caller divides by their count).

    Logits are computed only at trained positions (a prompt token's logits never matter), and
    with `chunk` only `chunk` rows of them at a time, recomputed in backward."""
    lm = causal_lm(peft_model)
    mask = attention_mask(segments) if packed else None  # None: transformers' causal path
    h = lm.model(input_ids=inputs, attention_mask=mask, use_cache=False).last_hidden_state
    keep = weights.reshape(-1) != 0
    h = h.reshape(-1, h.shape[-1])[keep]  # (B, L, D) -> (N, D): trained positions only
    t, w = targets.reshape(-1)[keep], weights.reshape(-1)[keep]
    if not chunk or chunk >= h.shape[0]:
        return _ce_sum(lm.lm_head, h, t, w)
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        total = total + checkpoint(_ce_sum, lm.lm_head, h[s : s + chunk], t[s : s + chunk],
                                   w[s : s + chunk], use_reentrant=False)
    return total


def count_params(peft_model) -> tuple[int, int]:
    total = sum(p.numel() for p in peft_model.parameters())
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return int(total), int(trainable)
