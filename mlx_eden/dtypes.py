"""`model.dtype: auto`: the fastest exact compute dtype for the device, decided in one place.

Why auto is the default (issue 22, measured on this project's 2-core Xeon, MLX CPU backend):
one epoch of 240 tiny-model conversations took 11.5 s in float32 and 80 s in bfloat16, because
MLX's CPU backend has no fast bf16 kernels (it converts around every matmul); a 40M model went
from 27 s to more than 5 minutes. On Metal, bf16/fp16 are native and halve the memory, so auto
keeps the checkpoint's own float dtype there, as `mlx_lm.lora` does.

On the torch backend auto is float32: bf16 is only faster on CPUs with native bf16 kernels
(AVX512-BF16/AMX) and changes the numbers; an explicit `model.dtype: bfloat16` opts in there.
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


def mlx_cpu_half_warning(dtype: str, fast_half: bool) -> str | None:
    """The one-line warning for an explicit half dtype on MLX's CPU backend."""
    if fast_half or dtype == "float32":
        return None
    return f"model.dtype={dtype} is slow here: " + MLX_CPU_HALF_COST.format(dtype=dtype)
