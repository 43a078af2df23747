"""`model.dtype: auto` (the default): the checkpoint's float dtype where half precision is native
(Metal), float32 on MLX's CPU backend, bf16 on the torch backend where the CPU has native bf16;
recorded in run.json; an explicit bf16 on MLX's CPU backend warns."""

from __future__ import annotations

import json

from mlx_eden.dtypes import checkpoint_dtype, cpu_bf16_flags, resolve_dtype, resolve_torch_dtype
from mlx_eden.memory.devices import get_device
from mlx_eden.memory.fit import with_overrides
from mlx_eden.memory.planner import make_plan
from mlx_eden.memory.shapes import load_config, shape_from_config
from mlx_eden.recipe import load_recipe

from .conftest import ROOT, needs_torch
from .test_trainer import events, train


def test_auto_resolves_per_device():
    bf16 = {"torch_dtype": "bfloat16"}
    assert resolve_dtype("auto", fast_half=True, config=bf16)[0] == "bfloat16"
    assert resolve_dtype("auto", fast_half=True, config={"dtype": "float16"})[0] == "float16"
    assert resolve_dtype("auto", fast_half=False, config=bf16)[0] == "float32"
    assert resolve_dtype("bfloat16", fast_half=False, config={}) == \
        ("bfloat16", "model.dtype in the recipe")
    assert checkpoint_dtype({}) == "float32" and checkpoint_dtype({"torch_dtype": "int8"}) == \
        "float32"


def test_the_planner_prices_what_auto_will_run():
    """On a Mac, auto keeps the checkpoint's bf16 (the same plan as an explicit bfloat16); on a
    RAM server (MLX's CPU backend) it is float32."""
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-32b-eden-m3max.yaml")
    cfg, source = load_config(recipe.model.path)
    shape = shape_from_config(cfg)
    assert shape.dtype == "bfloat16"

    def peak(dtype, device):
        r = with_overrides(recipe, {"model.dtype": dtype})
        return make_plan(r, shape, get_device(device), source).predicted_peak_bytes

    assert peak("auto", "m3-max-36gb") == peak("bfloat16", "m3-max-36gb")
    assert peak("auto", "epyc-256gb") == peak("float32", "epyc-256gb") != \
        peak("bfloat16", "epyc-256gb")
    assert load_recipe(None).model.dtype == "auto"  # the default


def test_auto_is_recorded_and_explicit_bf16_on_the_cpu_warns(tmp_path, tiny_qwen2):
    auto, proc = train(tmp_path, "auto", tiny_qwen2, **{"model.dtype": "auto",
                                                        "train.max_steps": 1})
    assert proc.returncode == 0, proc.stderr
    model = json.loads((auto / "run.json").read_text())["model"]["extra"]
    assert model["dtype"] == "float32" and model["dtype_reason"].startswith("auto: float32")
    assert not [w for w in events(auto, "warning") if "dtype" in w["message"]]
    bf16, proc = train(tmp_path, "bf16", tiny_qwen2, **{"model.dtype": "bfloat16",
                                                        "train.max_steps": 1})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((bf16 / "run.json").read_text())["model"]["extra"]["dtype"] == "bfloat16"
    (warning,) = [w["message"] for w in events(bf16, "warning") if "dtype" in w["message"]]
    assert "model.dtype=bfloat16 is slow here" in warning and "7x" in warning
    assert "model.dtype=bfloat16 is slow here" in proc.stdout  # on screen (plain log)


def test_torch_auto_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_bf16_flags(str(info)) == ["avx512_bf16", "amx_bf16"]
    info.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n")
    assert cpu_bf16_flags(str(info)) == []
    assert cpu_bf16_flags(str(tmp_path / "missing")) == []
    assert resolve_torch_dtype("auto", ["avx512_bf16"])[0] == "bfloat16"
    assert resolve_torch_dtype("auto", [])[0] == "float32"
    assert resolve_torch_dtype("float32", ["amx_bf16"]) == ("float32", "model.dtype in the recipe")


@needs_torch
def test_torch_backend_auto_is_bf16_exactly_where_native():
    import torch

    from mlx_eden.backends.torch.model import compute_dtype

    native = bool(cpu_bf16_flags()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    dtype, why, note = compute_dtype("auto")
    assert dtype == (torch.bfloat16 if native else torch.float32) and note is None
    assert why.startswith("auto: bfloat16" if native else "auto: float32")
    assert compute_dtype("float32") == (torch.float32, "model.dtype in the recipe", None)
