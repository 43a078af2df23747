"""Import transformers' AutoTokenizer without scanning its model folders on every run.

Why: `import transformers` reads every file under transformers/models (~560 folders, ~1,700
files) to build its lazy import table, and the first `transformers.models.*` import (AutoTokenizer
lives there) builds the same table again: the scan's lru_cache holds 128 folders, so the second
pass hits nothing. Measured on the tiny whole run (2 cores, transformers 5.24, min of 5
alternated in fresh processes): each scan 0.2-0.25 s quiet, 0.7 s on a busy box.

The scan is kept in a cache file keyed by the path, size and mtime of every file under
transformers/models (a changed, added or removed file means a new scan) and the transformers
and Python versions: `_ScanCache` puts it in front of transformers' own scan function while
`auto_tokenizer` imports transformers and AutoTokenizer, and takes it away after. So a first run
scans once (the second scan reads the file the first wrote) and later runs not at all; the
module tables, the tokenizer class and its ids are transformers' own (tests/test_hf_import.py).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import os
import pickle
import sys
from pathlib import Path

IMPORT_UTILS = "transformers.utils.import_utils"


def auto_tokenizer():
    """`transformers.AutoTokenizer`, the model-folder scans served from the cache file (when
    this imports transformers)."""
    if "transformers" not in sys.modules:
        sys.meta_path.insert(0, _ScanCache())
    try:
        import transformers

        return transformers.AutoTokenizer  # imports transformers.models: its scan, cached too
    finally:  # transformers' own scan function again: the cache serves this import only
        _ScanCache.remove()
        utils = sys.modules.get(IMPORT_UTILS)
        scan = getattr(utils, "create_import_structure_from_path", None)
        if hasattr(scan, "original"):
            utils.create_import_structure_from_path = scan.original


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlx-eden"


def fingerprint(folder: str | Path) -> str:
    """A hash of the path, size and mtime of every .py file under `folder` (~1,700 for
    transformers/models: 0.02 s)."""
    h = hashlib.sha256(repr((sys.version_info[:2], str(folder))).encode())
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.name.endswith(".py"):
                    st = e.stat()
                    h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


class _ScanCache(importlib.abc.MetaPathFinder):
    """Finds transformers.utils.import_utils as usual and, once it has run, wraps its
    `create_import_structure_from_path` so the transformers/models scan comes from the cache
    file (written after the first real scan; unreadable or unwritable: a real scan)."""

    def find_spec(self, name, path, target=None):
        if name != IMPORT_UTILS:
            return None
        self.remove()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _wrap_scan(module)

            spec.loader.exec_module = exec_module  # this spec's loader object only
        return spec

    @staticmethod
    def remove() -> None:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ScanCache)]


def _wrap_scan(module) -> None:
    scan = getattr(module, "create_import_structure_from_path", None)
    if scan is None or not hasattr(scan, "__wrapped__"):
        return  # another transformers: nothing to wrap
    models = os.path.normpath(Path(module.__file__).parent.parent / "models")
    version = getattr(sys.modules.get("transformers"), "__version__", "")

    def cached_scan(module_path):
        folder = module_path if os.path.isdir(module_path) else os.path.dirname(module_path)
        if os.path.normpath(folder) != models:
            return scan(module_path)  # the sub-folders: transformers' own (lru-cached) scan
        if not memo:  # transformers asks twice in one import (see the module docstring)
            memo.append(models_scan(module_path))
        return memo[0]

    memo = []

    def models_scan(module_path):
        try:
            file = cache_dir() / f"transformers-models-{version}-{fingerprint(models)}.pickle"
        except OSError:
            return scan(module_path)
        try:
            structure = pickle.loads(file.read_bytes())
            if isinstance(structure, dict):
                return structure
        except Exception:  # noqa: BLE001  (missing, cut or foreign file: scan and rewrite it)
            pass
        structure = scan(module_path)
        _write(file, structure)
        return structure

    cached_scan.original = scan
    module.create_import_structure_from_path = cached_scan


def _write(file: Path, structure) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(structure, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(file)
    except OSError:
        pass  # a read-only home: scan every time, as transformers does
