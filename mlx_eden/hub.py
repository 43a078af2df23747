"""Resolve `model.path`: a local folder, or a Hugging Face Hub id downloaded once and cached."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import DamagedFile, UserError
from .safeio import read_json_object


def looks_like_hub_id(path: str) -> bool:
    return path.count("/") == 1 and not Path(path).exists() and not path.startswith((".", "/"))


def resolve_model(path: str, revision: str | None = None) -> Path:
    """A local model folder for `path`, downloading a hub id with huggingface-hub if needed
    (resumable, cached in ~/.cache/huggingface, with its progress bar)."""
    if not path:
        raise UserError("no model given", key="model.path",
                        hint="set model.path to a local folder or a hub id")
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError("model folder has no config.json", file=str(local))
        return check_model_folder(local)
    if not looks_like_hub_id(path):
        raise UserError("model folder not found", file=path,
                        hint="give an existing folder, or a hub id like Qwen/Qwen2.5-7B-Instruct")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    try:  # already cached: no network needed
        local = Path(snapshot_download(path, revision=revision, allow_patterns=patterns,
                                       local_files_only=True))
    except Exception:
        local = None
    if local is not None:
        return check_model_folder(local)
    try:
        local = Path(snapshot_download(path, revision=revision, allow_patterns=patterns))
    except Exception as e:
        raise UserError(f"cannot download {path} from the Hugging Face Hub "
                        f"({type(e).__name__})", key="model.path",
                        hint="with no network, use a local copy: --set model.path=DIR") from None
    return check_model_folder(local)


def check_model_folder(folder: Path) -> Path:
    """A model folder whose config.json is an object and whose safetensors files are whole: a
    damaged file is named here, in one line, instead of deep inside a loader."""
    config = read_json_object(folder / "config.json", "config.json")
    if not isinstance(config.get("model_type", ""), str):
        raise DamagedFile("config.json: model_type must be a string", file=str(folder))
    hidden = config.get("hidden_size")
    for f in sorted(folder.glob("*.safetensors")):
        embed = check_safetensors(f).get("model.embed_tokens.weight") or {}
        shape = embed.get("shape")  # quantized (U32) embeddings are packed: not comparable
        if embed.get("dtype") in ("F32", "F16", "BF16") and isinstance(hidden, int) \
                and shape and shape[-1] != hidden:
            raise DamagedFile(f"config.json says hidden_size {hidden}, the weights have "
                              f"{shape[-1]}", file=str(folder / "config.json"),
                              hint="the config belongs to another model: restore it")
    return folder


def check_safetensors(path: Path) -> dict:
    """The header (returned) parses and every tensor's bytes are in the file (a cut copy fails
    this).
    Read by hand: the format is an 8-byte length, a JSON header, then the data; safetensors'
    own reader would memory-map the whole file only to raise a message naming no file."""
    size = path.stat().st_size
    problem = None
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if 8 + n <= size else None
        if header is None or not isinstance(header, dict):
            problem = "its header is cut or corrupt"
        else:
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                      default=0)
            if 8 + n + end > size:
                problem = f"it is cut short ({size} of {8 + n + end} bytes)"
    except (struct.error, ValueError, KeyError, TypeError, IndexError):
        problem = "its header is cut or corrupt"
    if problem:
        raise DamagedFile(f"damaged safetensors file: {problem}", file=str(path),
                          hint="restore or re-download the model")
    return header
