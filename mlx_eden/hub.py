"""Resolve `model.path`: a local folder, or a Hugging Face Hub id downloaded once and cached."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


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
        return local
    if not looks_like_hub_id(path):
        raise UserError("model folder not found", file=path,
                        hint="give an existing folder, or a hub id like Qwen/Qwen2.5-7B-Instruct")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    try:  # already cached: no network needed
        return Path(snapshot_download(path, revision=revision, allow_patterns=patterns,
                                      local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(path, revision=revision, allow_patterns=patterns))
    except Exception as e:
        raise UserError(f"cannot download {path} from the Hugging Face Hub "
                        f"({type(e).__name__})", key="model.path",
                        hint="with no network, use a local copy: --set model.path=DIR") from None
