"""`eden-mlx eval RUN_DIR`: greedy generation on a split of the run's own data, scored.

The run's resolved recipe (run.json) says which model, adapter structure, data files, split and
template were used, so evaluation sees exactly the prompts training rendered. Generation always
uses the MLX backend: both backends write mlx-lm-format adapters.
"""

from __future__ import annotations

from pathlib import Path

from ..backends.base import load_backend
from ..data.prompting import stop_ids
from ..data.render import prompt_and_reference
from ..data.splits import read_splits
from ..errors import UserError
from ..hub import resolve_model
from ..recipe import recipe_from_dict
from ..run.rundir import RunDir
from ..safeio import published, write_json_atomic
from ..tokens import recipe_tokenizer
from .metrics import classification_report, exact_match
from .runner import untrained


def adapter_dir(run: RunDir, which: str) -> Path:
    path = published({"best": run.best, "adapter": run.adapter}.get(which, Path(which)))
    if not (path / "adapters.safetensors").is_file():
        raise UserError("no adapter there", file=str(path),
                        hint="use --adapter best (needs evaluation during training) or adapter")
    return path


def evaluate_run(run_dir: str | Path, split: str = "test", adapter: str = "best",
                 limit: int | None = None, max_new_tokens: int | None = None) -> dict:
    """Generate for every record of `split` and score it; the report is also written to
    RUN_DIR/eval-<split>.json."""
    run = RunDir(run_dir)
    recipe = recipe_from_dict(run.read_recipe_dict(), file=str(run.run_json))
    records = read_splits(recipe.data, recipe.train.seed)[split]
    if not records:
        raise UserError(f"the run has no {split} split", key=f"data.{split}",
                        hint="give data.test (or data.split) in the recipe, or --split valid")
    records = records[:limit] if limit else records
    model_dir = resolve_model(recipe.model.path, recipe.model.revision)
    tok = recipe_tokenizer(recipe, model_dir)
    chosen = adapter_dir(run, adapter)
    backend = load_backend("mlx")
    backend.setup(untrained(recipe), model_dir)
    backend.load_adapter(chosen)
    prompts, refs = zip(*(prompt_and_reference(r, tok, recipe.data) for r in records), strict=True)
    stop = stop_ids(tok)
    n = max_new_tokens or recipe.eval.max_new_tokens
    outputs = [o for k in range(0, len(prompts), 8)  # batched, 8 prompts at a time
               for o in backend.generate(list(prompts[k : k + 8]), n, stop)]
    preds = [tok.decode(o, skip_special_tokens=True) for o in outputs]
    pairs = list(zip(refs, preds, strict=True))
    labels = list(recipe.eval.labels)
    report = classification_report(pairs, labels) if labels else exact_match(pairs)
    report.update(split=split, adapter=str(chosen), labels=labels,
                  samples=[{"where": r.where, "reference": ref, "prediction": p}
                           for r, (ref, p) in zip(records[:20], pairs[:20], strict=True)])
    write_json_atomic(run.root / f"eval-{split}.json", report)
    return report
