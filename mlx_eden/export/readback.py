"""Read a GGUF file back as Hugging Face-named float32 weights (gguf-py's own dequantizer), so
MLX can run exactly the weights llama.cpp runs: comparing a 4-bit GGUF with the float model
would measure quantization, not the exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def dequantized_weights(gguf_path: str | Path, model_dir: str | Path) -> dict[str, np.ndarray]:
    """{HF name: float32 array} for every tensor of `gguf_path`, named and shaped as in the
    float folder `model_dir` it was exported from."""
    return dict(dequantized_tensors(gguf_path, model_dir))


def dequantized_tensors(gguf_path: str | Path, model_dir: str | Path):
    """(HF name, float32 array) for each tensor of `gguf_path` in turn (one in memory)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from gguf.utility import SafetensorsLocal

    from .files import read_config
    from .gguf import arch_of, names_map

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    names = names_map(arch_of(config, str(model_dir)), config["num_hidden_layers"])
    hf_of: dict[str, tuple[str, tuple]] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with SafetensorsLocal(f) as tensors:
            for hf, t in tensors.items():
                name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
                hf_of.setdefault(name, (hf, tuple(t.shape)))
    for t in GGUFReader(str(gguf_path)).tensors:
        if t.name not in hf_of:
            raise UserError(f"GGUF tensor {t.name} has no counterpart in {model_dir}",
                            file=str(gguf_path))
        hf, shape = hf_of[t.name]
        yield hf, np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
