"""Quantize a float GGUF with llama.cpp's own quantizer (through llama-cpp-python), and say
beforehand which tensors it cannot quantize as asked.

llama.cpp quantizes a tensor in blocks along its rows: 256 values for K-quants, 32 for q8_0. A
row length that is not a multiple falls back to another type (q4_K → q5_0, q5_K → q5_1,
q6_K → q8_0, a tied or output matrix → q8_0, else f16) with only a log line, so we find those
tensors from the shapes, refuse unless the user accepts them, and report the types the file
really got.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from ..errors import UserError

# name → (gguf-py's LlamaFileType member, which is llama.cpp's llama_ftype; block size)
QUANTS = {"q8_0": ("MOSTLY_Q8_0", 32), "q4_k_m": ("MOSTLY_Q4_K_M", 256),
          "q5_k_m": ("MOSTLY_Q5_K_M", 256), "q6_k": ("MOSTLY_Q6_K", 256)}


def predicted_fallbacks(plan, quant: str) -> dict[str, str]:
    """GGUF tensor name → why llama.cpp cannot store it as `quant` asks: the matrices whose row
    length is not a multiple of the block size. (Which type each falls back to depends on
    llama.cpp's per-tensor choices, so it is read back from the file afterwards.)"""
    block = QUANTS[quant][1]
    return {p.name: f"row length {p.shape[-1]} is not a multiple of {block}"
            for p in plan if len(p.shape) >= 2 and p.shape[-1] % block}


def check_fallbacks(plan, quant: str, allow: bool) -> dict[str, str]:
    fallbacks = predicted_fallbacks(plan, quant)
    if fallbacks and not allow:
        names = ", ".join(list(fallbacks)[:6]) + (" ..." if len(fallbacks) > 6 else "")
        raise UserError(f"{quant} cannot be exact for {len(fallbacks)} tensors, which llama.cpp "
                        f"would silently store as another type: {names}",
                        hint="pass --allow-fallback to accept that (each tensor's type is "
                        "then reported), or choose q8_0 / f16")
    return fallbacks


def llama_quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> None:
    """Run llama.cpp's `llama_model_quantize` (the same code as the llama-quantize tool)."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(f"{quant} needs llama.cpp's quantizer (the gguf extra)",
                        hint="pip install -e '.[gguf]' in the clone") from None
    from gguf import LlamaFileType

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(LlamaFileType, QUANTS[quant][0]))
    params.nthread = threads
    with _captured_stderr() as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no log"]
        raise UserError(f"llama.cpp's quantizer failed ({rc}): {last[0]}", file=str(src))


@contextlib.contextmanager
def _captured_stderr():
    """Send the C library's stderr (one line per tensor, fallbacks included) to a temporary
    file: we report the fallbacks ourselves, and keep the log for an error message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "llama.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def tensor_types(path: Path) -> dict[str, str]:
    """GGUF tensor name → stored type, read back from the file."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name.lower() for t in GGUFReader(str(path)).tensors}
