"""LoftQ initialisation of LoRA on a base quantized at load time (adapter.init: loftq).

For each adapted layer with float weight W (out, in), alternate (peft's `loftq_init`, with the
LoRA scale s folded in so that mlx-lm's `y = x Wq^T + s (x A) B` starts at the right point):

    res = W
    repeat iters times:  Q = quant(res);  R = W - deq(Q);  A, B = rank-r SVD of R;  res = W - s (AB)^T

With iters=1, Q = quant(W): exactly the base `model.quantize` already loads, so nothing extra is
stored. With iters>1, Q differs; the quantized weights of the adapted layers are stored in every
adapter folder (loftq_base.safetensors, hard links to one copy in the run directory, so each
folder is self-contained at no extra disk), and every later load (resume, eval, init_from, fuse,
export --verify) puts them into the base.

The float W comes from a second, lazy load of the checkpoint, one layer at a time: the load-time
spike is one float layer plus the SVD's workspace (the planner prices it: memory/loftq.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ...errors import UserError
from .model import DTYPES

BASE_FILE = "loftq_base.safetensors"
PARTS = ("weight", "scales", "biases")
OVERSAMPLE, POWER_ITERS = 10, 4  # randomized SVD, see _low_rank


def loftq_layer(w: np.ndarray, rank: int, scale: float, bits: int, group_size: int,
                iters: int = 1, dtype=mx.float32):
    """LoftQ for one weight w (out, in) float32 → (Q, a (in, r), b (r, out)), Q being
    mx.quantize's (weight, scales, biases) of the base in `dtype`."""
    res = w
    for i in range(iters):
        q = mx.quantize(mx.array(res).astype(dtype), group_size=group_size, bits=bits)
        r = dequantize(q, group_size, bits)
        np.subtract(w, r, out=r)  # (out, in) the quantization error, in place: see memory/loftq
        a, b = _low_rank(r, rank, scale)
        del r
        if i + 1 < iters:
            res = (a @ b).T  # (out, in) what the adapter covers; the next Q quantizes the rest
            res *= -scale
            res += w
    return q, a, b


def dequantize(q, group_size: int, bits: int) -> np.ndarray:
    """deq(Q) as float32 numpy (out, in)."""
    return np.array(mx.dequantize(*q, group_size=group_size, bits=bits).astype(mx.float32))


def _low_rank(r: np.ndarray, rank: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """a (in, r), b (r, out) with scale * a @ b ~ the best rank-r approximation of r^T; the
    singular values are split evenly between a and b (peft's sqrt(S) on each side).

    A seeded randomized SVD (Halko et al. 2011, 10 extra columns, 4 power iterations) instead
    of a full one: LoftQ needs only the top r directions, and on a 1024 x 4096 4-bit residual
    (rank 16, one core here) the full SVD took 4.6 s and this 0.09 s while removing 93% of
    what the exact one removes; the full one scales as out^2 * in (minutes per 32B MLP layer)
    and MLX's own svd has no thin mode (a 27648^2 Vt is 3 GB)."""
    k = min(rank + OVERSAMPLE, *r.shape)
    y = r @ np.random.default_rng(0).standard_normal((r.shape[1], k)).astype(np.float32)
    for _ in range(POWER_ITERS):  # (out, k): sharpen towards the top singular directions
        y, _ = np.linalg.qr(y)
        y = r @ (r.T @ y)
    y, _ = np.linalg.qr(y)
    u, s, vt = np.linalg.svd(y.T @ r, full_matrices=False)  # (k, k) (k,) (k, in)
    u = y @ u  # (out, k)
    root = np.sqrt(s[:rank] / scale)
    a = (vt[:rank].T * root).astype(np.float32)       # (in, r)
    b = (u[:, :rank] * root).T.astype(np.float32)     # (r, out)
    return a, b


def residual(w: np.ndarray, q, a, b, scale: float, group_size: int, bits: int) -> float:
    """||W - (deq(Q) + s (AB)^T)||_F: how far base + adapter starts from the float weight."""
    return float(np.linalg.norm(w - dequantize(q, group_size, bits) - scale * (a @ b).T))


def float_weights(model_dir: Path, dtype: str):
    """The checkpoint's float weights by module name, read lazily (nothing is read until a
    weight is evaluated), in the compute dtype as model.load_base casts them."""
    from mlx_lm.utils import load_model

    model, config = load_model(Path(model_dir), lazy=True)
    if "quantization" in config:
        raise UserError("adapter.init: loftq needs a float checkpoint; this one is already "
                        "quantized", file=str(model_dir),
                        hint="point model.path at the float model and set model.quantize.bits")
    model.set_dtype(DTYPES[dtype])
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def initialize(model, model_dir: Path, recipe, dtype: str) -> dict[str, mx.array]:
    """Set every LoRA layer's lora_a/lora_b (and, with iters>1, its quantized base) by LoftQ.

    Returns the base tensors to store with the adapter ({} when iters=1)."""
    a, q = recipe.adapter, recipe.model.quantize
    floats = float_weights(model_dir, dtype)
    stored = {}
    for name, module in model.named_modules():
        if not hasattr(module, "lora_a"):
            continue
        base = module.linear
        if not isinstance(base, nn.QuantizedLinear):
            continue  # left float by quantize_model (width not a multiple of the group size)
        w = np.array(floats.pop(name).astype(mx.float32))  # (out, in) the one-layer spike
        qw, la, lb = loftq_layer(w, a.rank, a.scale, q.bits, q.group_size, a.loftq_iters,
                                 DTYPES[dtype])
        module.lora_a, module.lora_b = mx.array(la), mx.array(lb)
        if a.loftq_iters > 1:
            base.weight, base.scales, base.biases = qw
            stored.update({f"{name}.{p}": t for p, t in zip(PARTS, qw, strict=True)})
        mx.eval(module.parameters())
        del w
    return stored


def save_base(directory: Path, tensors: dict[str, mx.array], source: Path | None) -> Path:
    """Put loftq_base.safetensors into `directory` as a hard link to one copy kept beside it
    (the run directory: adapter folders are staged there before their rename), written on the
    first save of this process. Returns that copy's path, the `source` of the next save."""
    if source is None or not source.is_file():
        source = Path(directory).parent / BASE_FILE
        tmp = source.with_name(f".tmp-{BASE_FILE}")
        mx.save_safetensors(str(tmp), tensors)
        os.replace(tmp, source)
    target = Path(directory) / BASE_FILE
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links: a copy
        shutil.copyfile(source, target)
    return source


def apply_stored_base(model, directory: Path, wrapped: bool) -> dict[str, mx.array] | None:
    """Put a stored LoftQ base (if `directory` has one) into `model`'s quantized layers.
    `wrapped`: the layers already carry LoRA (their base sits under `.linear`)."""
    path = Path(directory) / BASE_FILE
    if not path.is_file():
        return None
    tensors = mx.load(str(path))
    names = dict(tree_flatten(model.parameters()))
    pairs = []
    for key, value in tensors.items():
        module, part = key.rsplit(".", 1)
        target = f"{module}.linear.{part}" if wrapped else key
        if target not in names or names[target].shape != value.shape:
            raise UserError(f"{key} does not fit this base", file=str(path),
                            hint="use the base model (and model.quantize) the adapter was "
                            "trained with")
        pairs.append((target, value.astype(names[target].dtype)))  # float32 for inference
    model.load_weights(pairs, strict=False)
    mx.eval(model.parameters())
    return tensors
