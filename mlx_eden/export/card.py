"""Model cards: the README.md the Hugging Face Hub renders, written beside every export (inside an
export folder; `<file>.README.md` next to a GGUF or a Modelfile). What it says comes from the
run the adapter was trained in (run.json, metrics.jsonl, eval/summary.json) when the adapter sits
in a run directory; what is not known is written "unknown", never guessed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from ..adapters import read_adapter_config
from ..run.rundir import sha256, versions
from .fuse import provenance

UNKNOWN = "unknown"
RUN_DEPTH = 3  # RUN_DIR/adapter, RUN_DIR/best, RUN_DIR/checkpoints/<step>/adapter


def card_path(output: str | Path) -> Path:
    """Where the card of `output` goes: inside a folder, beside a file."""
    output = Path(output)
    return output / "README.md" if output.is_dir() else output.with_name(output.name + ".README.md")


def find_run(adapter: str | Path | None) -> Path | None:
    """The run directory an adapter folder belongs to (the nearest parent with a run.json)."""
    if adapter is None:
        return None
    here = Path(adapter).resolve()
    for folder in [here, *here.parents][:RUN_DEPTH + 1]:
        if (folder / "run.json").is_file():
            return folder
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def front_matter(path: Path) -> dict:
    """The YAML front matter of a README.md (a Hub model's card), or {}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    try:
        meta = yaml.safe_load(text.split("---", 2)[1])
    except (yaml.YAMLError, IndexError):
        return {}
    return meta if isinstance(meta, dict) else {}


def base_license(model_dir: Path | None) -> str:
    """The base's license: its card's front matter or config.json, else a pointer to the base."""
    if model_dir is not None:
        for found in (front_matter(model_dir / "README.md").get("license"),
                      _read_json(model_dir / "config.json").get("license")):
            if found:
                return str(found)
    return "see the base model"


def data_rows(run: Path, info: dict) -> list[dict]:
    """Each training data file with the SHA-256 run.json recorded and its line count (counted
    only when the file on disk still has that checksum)."""
    rows = []
    for name, digest in (info.get("data") or {}).items():
        path = Path(name) if Path(name).is_absolute() or Path(name).exists() else run / name
        count = None
        if path.is_file() and sha256(path) == digest:
            with open(path, "rb") as f:
                count = sum(1 for line in f if line.strip())
        rows.append({"file": name, "sha256": digest, "rows": count})
    return rows


def _start(run: Path) -> dict:
    """The last start event of metrics.jsonl (samples used after filters), or {}."""
    found = {}
    try:
        with open(run / "metrics.jsonl", encoding="utf-8") as f:
            for line in f:
                if '"event": "start"' in line:
                    found = json.loads(line)
    except (OSError, ValueError):
        return {}
    return found


def facts(model: str | Path | None, adapter: str | Path | None) -> dict:
    """Everything a card says, from the export's inputs and the adapter's run directory."""
    if adapter is None and model is not None and provenance(model):  # a fused folder
        made = provenance(model)
        model, adapter = made["model"], made["adapter"]
    run = find_run(adapter)
    info = _read_json(run / "run.json") if run else {}
    recipe = info.get("recipe") or {}
    config = read_adapter_config(Path(adapter)) if adapter else {}
    base = model or (recipe.get("model") or {}).get("path") or config.get("model")
    local = Path(str(base)) if base and Path(str(base)).is_dir() else None
    hub_id = None if local or not base else str(base)
    return {"base": str(base) if base else UNKNOWN, "hub_id": hub_id,
            "revision": (recipe.get("model") or {}).get("revision") or UNKNOWN,
            "adapter": config, "recipe": recipe.get("name") or UNKNOWN,
            "run": str(run) if run else None, "status": info.get("status"),
            "data": data_rows(run, info) if run else None, "start": _start(run) if run else {},
            "eval": _read_json(run / "eval" / "summary.json") if run else {},
            "trained_with": info.get("versions") or {}, "license": base_license(local or _cached(hub_id))}


def _cached(hub_id: str | None) -> Path | None:
    """The Hugging Face cache's snapshot of a hub id, without a download (its card holds the
    license), or None."""
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, "config.json")
    except ValueError:  # not a repo id after all
        return None
    return Path(found).parent if isinstance(found, str) else None


def _meta(f: dict, library: str, tags: list[str]) -> dict:
    """Hub front matter: base_model only for a hub id (a local path means nothing on the Hub);
    license only when the base says it (the Hub wants an id, not a sentence)."""
    meta = {"library_name": library, "tags": ["mlx-eden", *tags]}
    if f["hub_id"]:
        meta["base_model"] = f["hub_id"]
    if f["license"] != "see the base model":
        meta["license"] = f["license"]
    return meta


def _adapter_lines(config: dict) -> list[str]:
    if not config:
        return ["No adapter (weights as the base, re-typed)."]
    lora, eden = config.get("lora_parameters", {}), config.get("eden", {})
    return [f"- type: {config.get('fine_tune_type', 'lora')}",
            f"- rank: {lora.get('rank', UNKNOWN)}, alpha: {eden.get('alpha', UNKNOWN)} "
            f"(scale {lora.get('scale', UNKNOWN)}), dropout: {lora.get('dropout', UNKNOWN)}, "
            f"rsLoRA: {eden.get('rslora', UNKNOWN)}",
            f"- modules: {', '.join(eden.get('targets') or lora.get('keys') or [UNKNOWN])}; "
            f"layers: {eden.get('layers', config.get('num_layers', UNKNOWN))}"]


def _data_lines(f: dict) -> list[str]:
    if f["data"] is None:
        return [f"{UNKNOWN} (the adapter is not in a run directory with a run.json)"]
    lines = ["| file | rows | SHA-256 |", "|---|---|---|"]
    lines += [f"| {d['file']} | {d['rows'] if d['rows'] is not None else UNKNOWN} | "
              f"`{d['sha256']}` |" for d in f["data"]]
    if f["start"]:
        lines.append(f"\nSamples used: {f['start'].get('train_samples')} train, "
                     f"{f['start'].get('valid_samples')} validation.")
    return lines


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _eval_lines(summary: dict) -> list[str]:
    if not summary:
        return ["No evaluation recorded (`eden-mlx eval RUN_DIR` writes eval/summary.json)."]
    lines = ["| suite | metric | value |", "|---|---|---|"]
    for suite, metrics in (summary.get("suites") or {}).items():
        lines += [f"| {suite} | {k} | {_num(v)} |" for k, v in metrics.items()
                  if isinstance(v, (int, float, str))]
    gates = summary.get("gates") or []
    if gates:
        lines += ["", "| gate | value | condition | passed |", "|---|---|---|---|"]
        lines += [f"| {g['metric']} | {_num(g['value'])} | {g['condition']} | "
                  f"{'yes' if g['passed'] else 'NO'} |" for g in gates]
    lines.append(f"\nAll gates passed: {'yes' if summary.get('passed') else 'no'}.")
    return lines


def render(f: dict, *, title: str, what: str, library: str, tags: list[str]) -> str:
    """The card's text: YAML front matter, then Markdown sections."""
    versions_line = ", ".join(f"{k} {v}" for k, v in f["trained_with"].items()) or UNKNOWN
    body = [f"# {title}", "", what, "",
            "## Base model", f"- {f['base']} (revision: {f['revision']})",
            f"- license: {f['license']}", "",
            "## Adapter", *_adapter_lines(f["adapter"]), "",
            "## Training data", *_data_lines(f), "",
            "## Recipe", f"- name: {f['recipe']}",
            f"- run: {f['run'] or UNKNOWN} (status: {f['status'] or UNKNOWN})", "",
            "## Evaluation", *(_eval_lines(f["eval"]) if f["run"] else [UNKNOWN]), "",
            "## Versions", f"- trained with: {versions_line}",
            "- exported with: " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
    meta = yaml.safe_dump(_meta(f, library, tags), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n" + "\n".join(body)


def write_card(output: str | Path, *, model: str | Path | None, adapter: str | Path | None,
               what: str, library: str, tags: list[str]) -> Path:
    """Write the model card of the export `output`; return its path."""
    f = facts(model, adapter)
    text = render(f, title=f"{Path(output).name}: {f['recipe']}", what=what, library=library,
                  tags=tags)
    return _write(output, text)


def _write(output: str | Path, text: str) -> Path:
    path = card_path(output)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a card is whole or absent
    return path


def write_card_from(output: str | Path, source: str | Path, *, what: str, tags: list[str]) -> Path:
    """The card of an export made from another export (a Modelfile from a GGUF): the source's
    card under this export's heading; an all-unknown card when the source has none."""
    src = card_path(source)
    if not src.is_file():
        return write_card(output, model=None, adapter=None, what=what, library="gguf", tags=tags)
    meta = front_matter(src)
    meta["tags"] = list(dict.fromkeys([*(meta.get("tags") or []), *tags]))
    body = src.read_text(encoding="utf-8").split("---", 2)[2].lstrip()
    text = (f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n"
            f"# {Path(output).name}\n\n{what}\n\nThe card of {Path(source).name}:\n\n"
            + ("\n" + body).replace("\n#", "\n##").lstrip("\n"))
    return _write(output, text)
