"""`model.dtype: auto`: the fastest exact compute dtype for the device, decided in one place.

Why auto is the default (issue 22, measured on a 2-core x86 box, MLX CPU backend):
one epoch of 240 tiny-model conversations took 11.5 s in float32 and 80 s in bfloat16, because
MLX's CPU backend has no fast bf16 kernels (it converts around every matmul); a 40M model went
from 27 s to more than 5 minutes. On Metal, bf16/fp16 are native and halve the memory, so auto
keeps the checkpoint's own float dtype there, as `mlx_lm.lora` does.

On the torch backend auto is bfloat16 where the CPU has native bf16 kernels (AVX512-BF16 or
AMX: Zen 4 EPYC, Sapphire Rapids Xeon) and float32 elsewhere, where bf16 is emulated and slower.
The base weights and activations run in bf16; adapters, their gradients and the optimizer state
stay float32 (backends/torch/model.py). Measured on this project's 2-core AMD EPYC (Zen 4,
AVX512-BF16; quiet, one thread, 2026-11-29): the matmul shapes of the 38M and 7B-proportioned
stand-ins (768 x 512 x 1536 ... 768 x 4736 x 896) ran 2.0-2.3x faster in bf16 (204-221 GFLOP/s)
than in float32 (92-101); PyTorch's CPU flash attention did not speed up, so bf16 bases run
attention as blocked matmuls (backends/torch/attention.py). The tiny model's validation loss
after training moved by 0.02% (tests/test_torch_backend.py); whole runs:
benchmarks/trainer_vs_eden.py.
"""

from __future__ import annotations

FLOAT_DTYPES = ("bfloat16", "float16", "float32")

# The cost quoted in the warning for an explicit half dtype on MLX's CPU backend (see above).
MLX_CPU_HALF_COST = ("MLX's CPU backend has no fast {dtype} kernels: one tiny-model epoch took "
                     "80 s in bfloat16 against 11.5 s in float32 (7x); use model.dtype: auto "
                     "or float32")


def checkpoint_dtype(config: dict) -> str:
    """The float dtype a checkpoint is stored in (config.json `torch_dtype`, or `dtype` in newer
    transformers); float32 when it says nothing usable."""
    value = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    value = value.removeprefix("torch.")
    return value if value in FLOAT_DTYPES else "float32"


def resolve_dtype(requested: str, *, fast_half: bool, config: dict) -> tuple[str, str]:
    """(dtype, why) for `model.dtype`. `fast_half`: the device runs bf16/fp16 natively (Metal)."""
    if requested != "auto":
        return requested, "model.dtype in the recipe"
    if fast_half:
        stored = checkpoint_dtype(config)
        return stored, f"auto: the checkpoint's {stored} (native on this device)"
    return "float32", "auto: float32 (no fast bf16 kernels on this CPU backend)"


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The native-bf16 instruction sets this CPU reports (avx512_bf16, amx_bf16); [] when it
    reports none or there is no /proc/cpuinfo (macOS)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in ("avx512_bf16", "amx_bf16") if f in flags]


def resolve_torch_dtype(requested: str, native_bf16: list[str]) -> tuple[str, str]:
    """(dtype, why) for `model.dtype` on the torch CPU backend. `native_bf16`: the CPU's native
    bf16 instruction sets (`cpu_bf16_flags()`, confirmed by oneDNN in the backend)."""
    if requested != "auto":
        return requested, "model.dtype in the recipe"
    if native_bf16:
        return "bfloat16", (f"auto: bfloat16 compute, float32 adapters and optimizer state "
                            f"(this CPU has native bf16: {', '.join(native_bf16)})")
    return "float32", "auto: float32 (this CPU has no native bf16 kernels: no avx512_bf16/amx)"


def mlx_cpu_half_warning(dtype: str, fast_half: bool) -> str | None:
    """The one-line warning for an explicit half dtype on MLX's CPU backend."""
    if fast_half or dtype == "float32":
        return None
    return f"model.dtype={dtype} is slow here: " + MLX_CPU_HALF_COST.format(dtype=dtype)
