"""`eden-mlx export gguf-lora`: the adapter as a llama.cpp LoRA GGUF, applied at load time
(`llama-cli --lora`), so one base GGUF serves many adapters.

llama.cpp multiplies B@A by adapter.lora.alpha / rank; we store alpha = scale * rank, which
keeps rsLoRA's alpha / sqrt(r) exact. Tensors are `blk.N.attn_q.weight.lora_a` with numpy shape
(r, in) and `.lora_b` (out, r): the transposes of mlx-lm's (in, r) and (r, out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..safeio import atomic_file
from ..tokens import read_tokens
from .adapter_io import check_shapes, load_adapter
from .files import read_config
from .gguf import WRITER, WRITER_KEY, arch_of, names_map, require_gguf


def export_gguf_lora(adapter_dir: str | Path, model_dir: str | Path,
                     output: str | Path) -> dict:
    """Write the adapter at `output`; returns a summary (modules, rank, alpha). `model_dir` may
    be MLX-quantized (the base a QLoRA run trained on): a LoRA GGUF needs only the base's
    architecture and tensor names, so 32B weights are never de-quantized for a 2 GB adapter."""
    if read_tokens(adapter_dir):
        raise UserError("the adapter trains new-token embedding rows (tokens.add), which a "
                        "llama.cpp LoRA cannot carry (it holds only per-layer A/B matrices)",
                        file=str(adapter_dir), hint="fuse it (eden-mlx fuse) and export the "
                        "fused folder with `eden-mlx export gguf`")
    gguf = require_gguf()
    adapter = load_adapter(adapter_dir)
    if adapter.dora:
        raise UserError("llama.cpp has no DoRA adapters", file=str(adapter_dir),
                        hint="fuse it (eden-mlx fuse) and export the fused folder instead")
    config = read_config(model_dir)
    arch = arch_of(config, str(model_dir), quantized_ok=True)
    names = names_map(arch, config["num_hidden_layers"])
    check_shapes(adapter, config, str(adapter_dir))
    alpha = adapter.scale * adapter.rank
    with atomic_file(output) as tmp:
        w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(WRITER_KEY, WRITER)
        w.add_name(Path(adapter_dir).name)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for module in sorted(adapter.modules):
            t = adapter.modules[module]
            name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
            if name is None or max(adapter.layers()) >= config["num_hidden_layers"]:
                raise UserError(f"{module} is not in the base model", file=str(adapter_dir),
                                hint="pass the base the adapter was trained on")
            w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(t["lora_a"].T, np.float32))
            w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(t["lora_b"].T, np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return {"modules": len(adapter.modules), "rank": adapter.rank, "alpha": alpha}
