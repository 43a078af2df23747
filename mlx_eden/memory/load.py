"""The peak while the base model loads (backends/mlx/model.py load_base).

mlx-lm loads lazily; load_base casts to the compute dtype and, for QLoRA on a float folder,
quantizes, then evaluates one tensor at a time, largest first. A tensor whose stored dtype is
not the compute dtype (a float32 checkpoint trained in bf16, a bf16 one trained in float32 on a
CPU) briefly holds its stored copy beside its result; quantized at load, it holds the stored
copy, its cast and the packed result. So the load peaks at

    max over tensors, largest first, of (results already loaded + this result + its stored copy
                                          [+ its cast, when quantized at load])

Measured in MLX 0.32 strict mode (mx.get_peak_memory around load_base, tiny models built with
mlx_eden.tiny, tests/test_planner_phases.py): a float32 checkpoint cast to bf16 with an untied
32,768 x 256 head, 64.0 MiB planned and measured (69.6 in file order, head last); tied 65,536 x
128 quantized to 4 bits at load, 52.5 MiB from a bf16 cast and 37.0 in float32 (the stored
float32 copy + the cast + the packed result). A checkpoint already in the compute dtype casts
nothing: its peak is the loaded weights.
"""

from __future__ import annotations

import math

from .shapes import ModelShape

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def quantizable(shp: tuple[int, ...], group: int) -> bool:
    """mlx-lm quantizes every Linear and Embedding whose input dimension is a multiple of the
    group size (so the embedding and lm_head too)."""
    return len(shp) == 2 and shp[1] % group == 0


def tensor_bytes(shp: tuple[int, ...], dt: int, bits: int | None, group: int) -> int:
    """One base tensor as MLX holds it: packed `bits`-bit values plus a scale and a bias per
    group in the compute dtype, or `dt` bytes per value."""
    if bits and quantizable(shp, group):
        out, inp = shp
        return out * inp * bits // 8 + 2 * out * (inp // group) * dt
    return math.prod(shp) * dt


def weight_bytes(shape: ModelShape, dt: int, bits: int | None, group: int) -> int:
    """The base model as MLX holds it."""
    return sum(tensor_bytes(shp, dt, bits, group) for _, shp in shape.tensors())


def load_peak(shape: ModelShape, dt: int, bits: int | None, group: int) -> int:
    """Bytes at the fullest moment of loading (module docstring), in load_base's order."""
    stored = DTYPE_BYTES.get(shape.dtype, 4)
    at_load = bits and not shape.quant_bits  # a float folder quantized while loading
    parts = []
    for _, shp in shape.tensors():
        result = tensor_bytes(shp, dt, bits, group)
        n = math.prod(shp)
        if shape.quant_bits and quantizable(shp, group):
            # An MLX-quantized folder: packed values load as they are; scales and biases cast.
            scales = 2 * shp[0] * (shp[1] // group)
            copy = scales * stored if stored != dt else 0
        elif at_load and quantizable(shp, group):
            copy = n * stored + (n * dt if stored != dt else 0)
        else:
            copy = n * stored if stored != dt else 0
        parts.append((result, copy))
    parts.sort(key=lambda p: p[0], reverse=True)  # largest first, as load_base evaluates
    peak = done = 0
    for result, copy in parts:
        peak = max(peak, done + result + copy)
        done += result
    return peak
