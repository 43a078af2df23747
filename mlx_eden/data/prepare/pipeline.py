"""`eden-mlx data prepare`: sources -> filters -> mix -> splits -> files, into a temporary folder
renamed into place at the end (a failed run never leaves a half-written dataset).

Memory: the conversations themselves wait in a spool file inside the temporary folder; what
stays in memory per kept conversation is its spool entry plus, for deduplication, a 16-byte
digest (and a MinHash signature with near-dedup on).
"""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ...hub import looks_like_hub_id
from ...safeio import atomic_dir, check_target
from .convert import Malformed, to_messages
from .dedup import NearDedup
from .filters import TokenCounter
from .funnel import Shared, run_source
from .metadata import percentiles, sha256_file, versions, write_json
from .mixing import mix
from .sources import read_source
from .spec import FilterSpec, PiiSpec, SourceSpec
from .splits import SPLITS, assign, decontaminate, oversample, shuffle
from .spool import Spool
from .where import MissingField

COMMAND = "data prepare"  # the marker safeio leaves in the folder (an earlier output of ours)


@dataclass
class Result:
    metadata: dict
    output: Path | None
    warnings: list[str] = field(default_factory=list)


def _preflight(spec: SourceSpec, i: int):
    """Open the source and read its first record now, so a missing file, a failing query or a
    mapping to a missing field is an error before any output exists."""
    items = read_source(spec, i)
    first = next(items, None)  # the sqlite query runs here
    if first is None:
        return iter(())
    if first.error is None and spec.fields:
        try:
            to_messages(first.raw, first.rows, spec)
        except (Malformed, MissingField) as e:
            if "missing" in str(e):
                raise UserError(f"the first record ({first.where}): {e}",
                                key=f"sources.{i}.fields",
                                hint=f"its keys are {', '.join(sorted(first.raw)[:12])}") from None
    return itertools.chain([first], items)


def _replay_sources(recipe) -> list[SourceSpec]:
    """Earlier rounds' output: chat JSONL, already clean; only malformed rows and exact
    duplicates are dropped."""
    f = FilterSpec(drop_empty=True, exact_dedup=True, pii=PiiSpec(action="off"))
    return [SourceSpec(name=f"replay:{Path(p).name}", type="jsonl", path=p, filters=f)
            for p in recipe.mix.replay]


def _shares(recipe, available: dict[str, int]) -> dict[str, float] | None:
    rs = recipe.mix.replay_share
    own = list(recipe.sources)
    if all(s.share is None for s in own):
        if not rs:
            return None
        total = sum(available[s.name] for s in own) or 1
        shares = {s.name: (1 - rs) * available[s.name] / total for s in own}
    else:
        shares = {s.name: (1 - rs) * s.share for s in own}
    if rs:
        shares["replay"] = rs
    return shares


def _tokenizer(name: str):
    """The model's Rust tokenizer from its tokenizer.json (a local folder, or a hub id resolved
    like model.path). Not through transformers: importing it took 5-15 s of a 3 s prepare run
    (benchmarks/data_prepare.py), and counting tokens needs only the ids."""
    from tokenizers import Tokenizer

    folder = _tokenizer_folder(name)
    if not (folder / "tokenizer.json").is_file():
        from ..render import load_tokenizer  # e.g. a sentencepiece-only folder

        return load_tokenizer(folder)
    try:
        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as e:  # the Rust library raises its own exception type
        raise UserError(f"cannot read tokenizer.json: {e}", file=str(folder), key="tokenizer",
                        hint="point tokenizer at a model folder with a valid tokenizer.json") \
            from None


def _tokenizer_folder(name: str) -> Path:
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if not looks_like_hub_id(name):
        raise UserError("tokenizer folder not found", file=name, key="tokenizer",
                        hint="give a model folder or a hub id like Qwen/Qwen2.5-7B-Instruct")
    from huggingface_hub import snapshot_download

    try:  # the tokenizer files only, never the weights; the cache first
        return Path(snapshot_download(name, allow_patterns=["tokenizer*", "*.json", "*.txt"]))
    except Exception as e:
        raise UserError(f"cannot get the tokenizer of {name} ({type(e).__name__})",
                        key="tokenizer", hint="--set tokenizer=/path/to/model/folder") from None


def run(recipe, out: Path, *, strict=False, dry_run=False, overwrite=False,
        progress=None) -> Result:
    """Prepare the dataset of `recipe` into `out` (nothing is written with dry_run).

    The folder is written under a temporary name and renamed into place at the end (safeio);
    it may replace only an earlier `data prepare` output, or anything with `overwrite`, and
    never a folder holding one of the inputs. `progress(source, records_read)` is called as
    records stream in (the CLI's progress bar).
    """
    out = Path(out)
    if not dry_run:
        inputs = [s.path for s in recipe.sources] + list(recipe.mix.replay)
        check_target(out, command=COMMAND, overwrite=overwrite, inputs=inputs)
    streams = [_preflight(s, i) for i, s in enumerate(recipe.sources)]
    replay = _replay_sources(recipe)
    streams += [_preflight(s, len(recipe.sources) + i) for i, s in enumerate(replay)]
    tok = _tokenizer(recipe.tokenizer) if recipe.tokenizer else None
    if dry_run:  # the spool still needs a folder
        with tempfile.TemporaryDirectory(prefix=".eden-prepare-") as tmp:
            meta = _build(recipe, Path(tmp), streams, replay, tok, strict, progress)
        return Result(meta, None, meta["mix"]["warnings"])
    with atomic_dir(out, command=COMMAND) as tmp:
        meta = _build(recipe, tmp, streams, replay, tok, strict, progress)
    return Result(meta, out, meta["mix"]["warnings"])


def _build(recipe, tmp: Path, streams, replay, tok, strict, progress) -> dict:
    with open(tmp / "rejected.jsonl", "wb") as rejected:
        shared = Shared(Spool(tmp / ".spool"), rejected, TokenCounter(tok), strict, recipe.split)
        try:
            kept, counts = {}, {}
            for spec, items in zip(list(recipe.sources) + replay, streams, strict=True):
                tick = (lambda n, s=spec.name: progress(s, n)) if progress else None
                kept[spec.name], counts[spec.name] = run_source(
                    items, spec, shared, tick, lenient=spec.name.startswith("replay:"))
            splits, mixinfo, decon = _mix_and_split(recipe, kept, replay, shared)
            if not splits["train"]:
                left = ", ".join(f"{n} {len(v)}" for n, v in kept.items())
                raise UserError(f"nothing left for train.jsonl (kept per source: {left})",
                                hint="loosen the filters or shares; --dry-run shows the "
                                "funnel without writing")
            files = _write_splits(tmp, splits, shared.spool)
        finally:
            shared.spool.close()
    files["rejected.jsonl"] = {"records": _count_lines(tmp / "rejected.jsonl"),
                               "sha256": sha256_file(tmp / "rejected.jsonl")}
    meta = _metadata(recipe, replay, counts, kept, mixinfo, splits, decon, files, tok)
    write_json(tmp / "metadata.json", meta)
    return meta


def _mix_and_split(recipe, kept, replay, shared):
    groups = {s.name: kept[s.name] for s in recipe.sources}
    if replay:
        groups["replay"] = [e for s in replay for e in kept[s.name]]
    available = {g: len(v) for g, v in groups.items()}
    res = mix(available, _shares(recipe, available), recipe.mix.total, recipe.mix.on_short,
              recipe.seed)
    chosen = []
    for g, entries in groups.items():
        picked = set(res.picks[g])
        chosen += [entries[p] for p in res.picks[g]]
        for j, e in enumerate(entries):
            if j not in picked:
                shared.reject(e.source, e.where, "mix", f"not sampled: {g} has a share of "
                              f"{res.targets[g]} records")
    sp = recipe.split
    splits = assign(chosen, sp.fractions, recipe.seed)
    decon = _decontaminate(recipe, splits, shared)
    if sp.oversample_train:  # after decontamination: repeats need no second check
        splits["train"] = oversample(splits["train"], recipe.seed)
    splits = {s: shuffle(v, recipe.seed, 31 + i) for i, (s, v) in enumerate(splits.items())}
    info = {"targets": res.targets,
            "realized": {g: len(res.picks[g]) for g in groups},
            "unique": {g: len(set(res.picks[g])) for g in groups},
            "warnings": res.warnings}
    return splits, info, decon


def _decontaminate(recipe, splits, shared) -> dict[str, int]:
    """Near duplicates of held-out records leave train (and valid), each to rejected.jsonl."""
    if recipe.split.decontaminate is None or not (splits["valid"] or splits["test"]):
        return {s: 0 for s in SPLITS}
    f = recipe.filters
    before = {s: list(v) for s, v in splits.items()}
    decon = decontaminate(splits, NearDedup(recipe.split.decontaminate, f.num_perm, f.shingle),
                          shared.spool.read)
    for s in SPLITS:
        left = {id(e) for e in splits[s]}
        for e in before[s]:
            if id(e) not in left:
                shared.reject(e.source, e.where, "decontaminate", f"{s} record near-duplicates "
                              "a held-out (valid/test) record")
    return decon


def _write_splits(tmp: Path, splits, spool) -> dict:
    files = {}
    for name, entries in splits.items():
        if not entries:
            continue
        path = tmp / f"{name}.jsonl"
        with open(path, "wb") as f:
            for e in entries:
                rec = {"messages": spool.read(e)}
                f.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
        files[path.name] = {"records": len(entries), "sha256": sha256_file(path)}
    return files


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _metadata(recipe, replay, counts, kept, mixinfo, splits, decon, files, tok) -> dict:
    def by(entries, attr):
        out: dict[str, int] = {}
        for e in entries:
            out[getattr(e, attr)] = out.get(getattr(e, attr), 0) + 1
        return dict(sorted(out.items()))

    sources = []
    for spec in list(recipe.sources) + replay:
        c = counts[spec.name]
        sources.append({"name": spec.name, "type": spec.type, "path": spec.path,
                        "sha256": sha256_file(spec.path), "read": c.read, "kept": c.kept,
                        "filters": c.steps(), "pii_redacted": dict(sorted(c.redacted.items())),
                        "nfc_normalized": c.nfc_normalized})
    return {
        "name": recipe.name, "description": recipe.description, "seed": recipe.seed,
        "sources": sources, "mix": mixinfo,
        "splits": {s: {"records": len(v), "by_source": by(v, "source"),
                       "by_stratum": by(v, "stratum") if recipe.split.stratify_by else {},
                       "decontaminated": decon[s],
                       "length": percentiles([e.tokens for e in v])}
                   for s, v in splits.items()},
        "length_unit": "tokens" if tok is not None else "characters",
        "files": dict(sorted(files.items())),
        "recipe": recipe.to_dict(), "versions": versions(),
    }

