"""MLX-format model folders (quantized) via mlx-lm's own converter."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from ...safeio import MARKER, publish_dir


def quantize_folder(src: str | Path, dst: str | Path, bits: int, group_size: int = 64) -> Path:
    """Write an MLX affine-quantized copy of the float model folder `src` at `dst`."""
    from mlx_lm.convert import convert

    src, dst = Path(src), Path(dst)
    tmp = Path(tempfile.mkdtemp(prefix=".quant-", dir=dst.parent)) / "model"
    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints progress lines
        convert(str(src), str(tmp), quantize=True, q_group_size=group_size, q_bits=bits)
    if (src / MARKER).is_file():  # a tiny model stays `eden-mlx tiny`'s own output
        shutil.copy2(src / MARKER, tmp / MARKER)
    publish_dir(tmp, dst)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return dst
