"""metadata.json: what went in (sources and their SHA-256, the resolved recipe), what each
filter did per source, what came out (per split and stratum, token-length percentiles, the
SHA-256 of every output file), versions and seed. No timestamps: the same inputs and seed give
a byte-identical file.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ...safeio import sha256 as sha256_file  # noqa: F401  (pipeline.py reads it from here)


def percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {"p50": int(np.percentile(a, 50)), "p90": int(np.percentile(a, 90)),
            "p99": int(np.percentile(a, 99)), "max": int(a.max()), "mean": round(float(a.mean()), 1)}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("mlx-eden", "datasketch", "transformers", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n",
                    encoding="utf-8")
