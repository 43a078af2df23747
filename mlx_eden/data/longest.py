"""The batch shapes a recipe's training data actually produces, for `eden-mlx plan`.

The planner's verdict prices every row at data.max_seq_length; real batches are only as wide as
their longest row (after truncation, and packing's width buckets). This reads the training split
as training will (the same split, template, truncation and batching: load_splits and BatchPlan,
reused rather than re-derived so the shapes cannot drift from what `train` builds) and returns
the distinct (rows, width) shapes of its micro-batches. Nothing is downloaded: a hub model's
tokenizer must already be in the Hugging Face cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .batching import BatchPlan
from .render import TOKENIZER_FILES, load_tokenizer
from .splits import load_splits
from .weights import train_files


@dataclass(frozen=True)
class DataShapes:
    """What the training split's micro-batches look like."""

    shapes: tuple[tuple[int, int], ...]   # distinct (rows, width) of the micro-batches
    longest_sample: int                   # tokens of the longest sample after truncation
    samples: int
    files: tuple[str, ...]

    @property
    def widest(self) -> int:
        return max(w for _, w in self.shapes)


def local_tokenizer_folder(path: str, revision: str | None = None) -> Path | None:
    """The model's folder when it is local or already cached (never downloads), else None."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local if any((local / n).is_file() for n in TOKENIZER_FILES) else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, revision=revision, local_files_only=True,
                                      allow_patterns=["*.json", "*.txt", "*.model", "*.jinja"]))
    except Exception:  # not cached (or not a hub id): the plan goes on without the data
        return None


def data_shapes(recipe) -> tuple[DataShapes | None, str]:
    """(the training batches' shapes, "") or (None, why they were not computed)."""
    spec = recipe.data
    if recipe.train.objective != "sft":
        return None, "preference data: only the max_seq_length worst case is planned"
    files = train_files(spec) if spec.train else []
    missing = [f for f in files if not Path(f).is_file()]
    if not files or missing:
        return None, f"data file not found: {missing[0] if missing else '(no data.train)'}"
    folder = local_tokenizer_folder(recipe.model.path, recipe.model.revision)
    if folder is None:
        return None, "the model's tokenizer is not on this machine (plan never downloads)"
    tok = load_tokenizer(folder)
    splits = load_splits(spec, tok, recipe.train.seed)
    plan = BatchPlan(splits.train, recipe.train.batch_size, spec.max_seq_length, 0,
                     spec.packing, recipe.train.seed)
    shapes = sorted({(len(rows), w) for rows, w in zip(plan.batches, plan.widths, strict=True)})
    longest = max(len(s.ids) for s in splits.train)
    return DataShapes(tuple(shapes), longest, len(splits.train), tuple(files)), ""
