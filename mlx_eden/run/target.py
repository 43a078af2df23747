"""What `chat` and `serve` talk to: a run directory (its base model, its best adapter, its
recipe's template options and system prompt) or a model folder with an optional adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adapters import read_adapter_config
from ..errors import UserError
from ..hub import resolve_model
from ..recipe import Recipe, recipe_from_dict
from ..safeio import published
from ..tokens import read_tokens
from .rundir import RunDir


@dataclass
class Target:
    model_dir: Path
    adapter: Path | None
    recipe: Recipe  # the run's (template options, system prompt), else the defaults
    backend: str  # the backend the run trained on ("mlx" for a bare model)
    label: str  # what the user named (shown in the banner)

    @property
    def name(self) -> str:
        """The model id clients use (serve's /v1/models): the run's or the model's folder name."""
        return Path(self.label.rstrip("/")).name or "model"


def _run_recipe(run: RunDir) -> tuple[Recipe, str]:
    info = run.read_run_json()
    return (recipe_from_dict(run.read_recipe_dict(), file=str(run.run_json)),
            info.get("backend") or "mlx")


def resolve_target(run_dir: str | None, model: str | None, adapter: str | None) -> Target:
    """RUN_DIR (its best adapter, else its last; `adapter` overrides) or --model M [--adapter A].
    An adapter inside a run directory brings that run's recipe along."""
    if bool(run_dir) == bool(model):
        raise UserError("give a run directory or --model (not both)",
                        hint="eden-mlx chat runs/NAME, or eden-mlx chat --model M --adapter A")
    if run_dir:
        run = RunDir(run_dir)
        recipe, backend = _run_recipe(run)  # one line when it is not a run directory
        if adapter:
            chosen = Path(adapter)
        else:
            best = published(run.best)
            chosen = best if (best / "adapters.safetensors").is_file() else published(run.adapter)
        model_dir = resolve_model(recipe.model.path, recipe.model.revision)
        label = str(run_dir)
    else:
        chosen = Path(adapter) if adapter else None
        home = RunDir(chosen.parent) if chosen is not None else None
        recipe, backend = (_run_recipe(home) if home is not None and home.run_json.is_file()
                           else (Recipe(), "mlx"))
        model_dir, label = resolve_model(model, None), str(model)
    if chosen is not None:
        if not (chosen / "adapters.safetensors").is_file():
            raise UserError("no adapter there (no adapters.safetensors)", file=str(chosen),
                            hint="point at a run's adapter/ or best/ folder")
        read_adapter_config(chosen)  # one line if its config is missing or damaged
        added = read_tokens(chosen)
        if added:
            # chat and serve load the base's tokenizer and embedding (mlx-lm, transformers): the
            # trained rows and the one-id tokens exist only in a fused folder.
            raise UserError(f"this adapter adds tokens ({', '.join(added['tokens'])}) in spare "
                            "embedding rows, which chat and serve do not load",
                            file=str(chosen), hint="fuse it first (eden-mlx fuse --model BASE --adapter "
                            "ADAPTER --output FUSED) and use --model FUSED")
    return Target(model_dir, chosen, recipe, backend, label)


def check_servable(target: Target) -> None:
    """mlx-lm loads the base as stored: an adapter trained on a base this run quantized at load
    time (QLoRA on a float folder) would meet float weights it never saw."""
    if target.adapter is None:
        return
    q = read_adapter_config(target.adapter).get("eden", {}).get("quantize") or {}
    if q.get("bits"):
        raise UserError(f"this adapter was trained on the base quantized to {q['bits']} bits "
                        "at load time; mlx-lm would serve it on the float base",
                        file=str(target.adapter), hint="fuse it first (eden-mlx fuse ... "
                        f"--requantize {q['bits']}) and serve the fused folder with --model")
