"""Model folders on disk: config, tokenizer files, safetensors tensors (atomic outputs are in
mlx_eden/atomic.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..safeio import read_json_object

# Everything a tokenizer (HF, mlx-lm, vLLM) reads from a model folder, chat template included.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
                   "chat_template.jinja", "chat_template.json", "generation_config.json")


def read_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise UserError("not a model folder (no config.json)", file=str(model_dir))
    return read_json_object(path, "the model's config.json")



def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer files of `src` into `dst`; returns the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied and "vocab.json" not in copied:
        raise UserError("the model folder has no tokenizer files", file=str(src),
                        hint="it needs tokenizer.json (and tokenizer_config.json)")
    return copied


def chat_template(model_dir: Path) -> str | None:
    """The chat template of a model folder, wherever transformers keeps it."""
    if (model_dir / "chat_template.jinja").is_file():
        return (model_dir / "chat_template.jinja").read_text()
    cfg = model_dir / "tokenizer_config.json"
    if cfg.is_file():
        tpl = json.loads(cfg.read_text()).get("chat_template")
        if isinstance(tpl, str):
            return tpl
    return None


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen by shifting (numpy has no bfloat16)."""
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def _as_array(name: str, t, f: Path) -> np.ndarray:
    raw = t.mmap_bytes()
    if t.dtype == "BF16":
        return _bf16_to_f32(raw).reshape(t.shape)
    if t.dtype in _DTYPES:
        return raw.view(_DTYPES[t.dtype]).reshape(t.shape)
    raise UserError(f"tensor {name} has dtype {t.dtype}: the folder holds quantized weights",
                    file=str(f), hint="de-quantize it first: eden-mlx fuse --model DIR "
                    "--output FLOAT_DIR")


def _safetensors(model_dir: str | Path) -> list[Path]:
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise UserError("no *.safetensors in the model folder", file=str(model_dir))
    return files


def read_tensors(model_dir: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, array) for every tensor of the folder's safetensors files, lazily (memory-mapped
    by gguf-py's reader, which, unlike safetensors.numpy, also reads bfloat16). F16 and F32 stay
    as stored; BF16 widens to F32."""
    from gguf.utility import SafetensorsLocal

    for f in _safetensors(model_dir):
        with SafetensorsLocal(f) as tensors:
            for name, t in tensors.items():
                yield name, _as_array(name, t, f)


def read_tensors_lazily(model_dir: str | Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """(HF name, loader) for every tensor: loader() reads that one tensor (as read_tensors), so
    a caller visiting tensors in another order holds one at a time, not a 65 GB bf16 folder."""
    from gguf.utility import SafetensorsLocal

    def loader(f: Path, name: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            with SafetensorsLocal(f) as tensors:
                return np.array(_as_array(name, tensors[name], f))
        return load

    for f in _safetensors(model_dir):
        with SafetensorsLocal(f) as tensors:
            names = list(tensors)
        yield from ((n, loader(f, n)) for n in names)


def _headers(model_dir: str | Path):
    """(dtype, shape) of every tensor, from the safetensors headers alone."""
    from gguf.utility import SafetensorsLocal

    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with SafetensorsLocal(f) as tensors:
            yield from ((t.dtype, t.shape) for t in tensors.values())


def source_dtype(model_dir: str | Path) -> str:
    """The float type most of the folder's weights are stored in: F32, F16 or BF16."""
    counts: dict[str, int] = {}
    for dtype, shape in _headers(model_dir):
        counts[dtype] = counts.get(dtype, 0) + int(np.prod(shape))
    return max(counts, key=counts.get) if counts else "F32"


def parameter_count(model_dir: str | Path) -> int:
    return sum(int(np.prod(shape)) for _, shape in _headers(model_dir))


def quantized_bytes(model_dir: str | Path, bits: int, group: int) -> int:
    """The folder's weights quantized at load time as QLoRA does (mlx-lm quantizes every matrix
    whose rows are a multiple of the group), with float32 scales and biases."""
    total = 0
    for _, shape in _headers(model_dir):
        n = int(np.prod(shape))
        quantized = len(shape) == 2 and shape[1] % group == 0
        total += n * bits // 8 + 2 * (n // group) * 4 if quantized else n * 4
    return total


def float32_bytes(model_dir: str | Path) -> int:
    """The folder's weights as MLX's float32 reference holds them: float tensors widened to 4
    bytes, packed quantized ones (U32) as stored."""
    return sum(int(np.prod(shape)) * 4 for _, shape in _headers(model_dir))

