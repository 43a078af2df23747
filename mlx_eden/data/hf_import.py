"""Import transformers' AutoTokenizer without scanning its model folders twice.

Why: `import transformers` reads every file under transformers/models (~560 folders, ~1,700
files) to build its lazy import table, and the first `transformers.models.*` import (AutoTokenizer
lives there) builds the same table again for `transformers.models`: the scan's lru_cache holds
128 folders, so the second pass hits nothing. Measured on the tiny whole run (2 cores,
transformers 5.24, min of 5 alternated in fresh processes): `from transformers import
AutoTokenizer` after `import transformers` took 0.28 s, of which 0.24 s is that second scan.

`transformers/models/__init__.py` does nothing but
`sys.modules[__name__] = _LazyModule(__name__, _file, define_import_structure(_file), ...)`;
`transformers/__init__.py` already computed that structure (with a "models." prefix, kept in
define_import_structure's own cache). We build the same `_LazyModule` from it, so the tokenizer
class, its module and every later `transformers.models.*` import are what transformers gives
(tests/test_hf_import.py compares the module's tables and the token ids). Anything unexpected
(another transformers layout, the module already imported) falls back to the ordinary import.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODELS = "transformers.models"
# The one line of transformers/models/__init__.py that builds the module at run time (5.x).
EXPECTED = ("sys.modules[__name__] = _LazyModule(__name__, _file, define_import_structure(_file), "
            "module_spec=__spec__)")


def auto_tokenizer():
    """`transformers.AutoTokenizer`, with `transformers.models` built from the first scan."""
    import transformers

    if MODELS not in sys.modules:
        try:
            _install_models(transformers)
        except Exception:  # noqa: BLE001  (any surprise: transformers' own import below)
            sys.modules.pop(MODELS, None)
    return transformers.AutoTokenizer


def _install_models(transformers) -> None:
    from transformers.utils import import_utils

    spec = importlib.util.find_spec(MODELS)
    if spec is None or spec.origin is None:
        return
    source = Path(spec.origin).read_text(encoding="utf-8")
    if source.rstrip().splitlines()[-1].strip() != EXPECTED:
        return  # another transformers: its own import
    folder = Path(transformers.__file__).parent / "models"
    # The same call as transformers/__init__.py: a cache hit, not a scan. Its frozenset() entry
    # also holds transformers' top-level names (no "models." prefix): not ours.
    prefixed = import_utils.define_import_structure(folder, prefix="models")
    cut = len("models.")
    structure = {backends: {name[cut:]: objects for name, objects in modules.items()
                            if name.startswith("models.")}
                 for backends, modules in prefixed.items()}
    module = import_utils._LazyModule(MODELS, spec.origin, structure, module_spec=spec)
    sys.modules[MODELS] = module
    transformers.models = module  # what the import system sets on the parent package
