"""Prepare recipes: what `eden-mlx data prepare` reads, declared once per key.

The same machinery as training recipes (mlx_eden/recipe.py): `_f(default, help)` per key, strict
YAML with file:line and did-you-mean, `extends`, `--set`, every problem collected. A source's
`filters` section is the top-level `filters` with the source's own keys laid over it, so a recipe
states the checklist once and a source states only where it differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import UserError
from ...recipe import _f, _merge, field_help, load_typed
from .where import parse_condition

# Names a source's `fields` mapping may fill; any other name is an error (did-you-mean).
CONTENT_FIELDS = ("messages", "system", "user", "assistant", "instruction", "input", "output",
                  "prompt", "completion", "text", "role", "content", "style", "context")
PII_KINDS = ("email", "phone", "rrn", "card", "ip", "url")


@dataclass(frozen=True)
class PiiSpec:
    action: Literal["off", "redact", "drop"] = _f(
        "redact", "redact replaces each hit with <EMAIL>, <PHONE>, ... (counted per kind); drop "
        "rejects the whole conversation; off leaves text alone.")
    kinds: list[str] = _f(["email", "phone", "rrn", "card", "ip"],
                          f"What to detect, from {', '.join(PII_KINDS)} (url is opt-in).")


@dataclass(frozen=True)
class FilterSpec:
    drop_empty: bool = _f(True, "Drop conversations with an empty or whitespace-only turn.")
    nfc: bool = _f(False, "Normalize every turn to Unicode NFC before the other filters. Text "
                   "copied on macOS is often NFD (decomposed Hangul), which llama.cpp tokenizes "
                   "into ~2.6x more ids than transformers (it skips the tokenizer's NFC step); "
                   "the count of changed conversations is in metadata.json.")
    min_hangul: float | None = _f(None, "Minimum share of Hangul among the letters of the "
                                  "assistant turns (0-1), e.g. 0.5 for Korean answers.")
    max_latin: float | None = _f(None, "Maximum share of Latin letters among the letters of the "
                                 "assistant turns (language mixing), e.g. 0.01.")
    min_answer_tokens: int | None = _f(None, "Every assistant turn has at least this many tokens "
                                       "of the recipe's tokenizer.")
    max_answer_tokens: int | None = _f(None, "Every assistant turn has at most this many tokens.")
    exact_dedup: bool = _f(True, "Drop exact duplicates (same messages) across all sources.")
    near_dedup: float | None = _f(None, "Drop near duplicates: MinHash/LSH Jaccard threshold "
                                  "(e.g. 0.8) over character shingles; null = off.")
    shingle: int = _f(5, "Characters per shingle for near-duplicate detection.")
    num_perm: int = _f(64, "MinHash permutations (more: sharper threshold, more memory).")
    pii: PiiSpec = _f(PiiSpec, "Personal information.")


@dataclass(frozen=True)
class SourceSpec:
    name: str = _f("", "Name of the source (counts, shares and rejected.jsonl use it).")
    type: Literal["jsonl", "csv", "sqlite"] = _f("jsonl", "File type.")
    path: str = _f("", "The file (relative paths resolve against the current directory).")
    query: str = _f("", "SQLite: the SELECT that yields the rows.")
    fields: dict[str, str] = _f({}, "Where each part of a conversation is: name -> dotted path "
                                "in the record (task.description) or column. Names: "
                                + ", ".join(CONTENT_FIELDS) + ". Empty = the record is in a "
                                "training format (messages / instruction+output / prompt+"
                                "completion / text).")
    group_by: str = _f("", "Rows with the same value of this column are one conversation "
                       "(one row per turn, with role and content fields).")
    order_by: str = _f("", "Column ordering the turns of a grouped conversation.")
    roles: dict[str, str] = _f({}, "Raw role value -> system, user or assistant "
                               "(e.g. bot: assistant).")
    system_prompt_by: str = _f("", "Dotted path whose value picks the system prompt.")
    system_prompts: dict[str, str] = _f({}, "Value of system_prompt_by -> system prompt.")
    where: list[str] = _f([], "Conditions every record must meet: 'PATH OP VALUE' with OP one "
                          "of == != >= <= > <, e.g. 'satisfaction >= 3', 'success == true'.")
    share: float | None = _f(None, "Share of the mixed dataset (shares of all sources sum to 1; "
                             "null everywhere = keep everything).")
    filters: FilterSpec = _f(FilterSpec, "This source's filters (the top-level filters with "
                             "these keys laid over them).")


@dataclass(frozen=True)
class MixSpec:
    total: int | None = _f(None, "Records after mixing (before splitting); null = the most the "
                           "sources give at their shares without repeating any.")
    on_short: Literal["repeat", "shortfall"] = _f(
        "shortfall", "A source too small for its share: repeat records (seeded) or give what "
        "it has. Either way it is reported as a warning.")
    replay: list[str] = _f([], "Earlier rounds' chat JSONL files mixed in against forgetting.")
    replay_share: float = _f(0.0, "Share of the mixed dataset taken from replay (e.g. 0.3).")


@dataclass(frozen=True)
class SplitSpec:
    fractions: list[float] = _f([0.9, 0.1, 0.0], "[train, valid, test] fractions summing to 1.")
    stratify_by: str = _f("", "Keep each stratum's share in every split: 'source', 'label' "
                          "(the final answer) or a dotted path in the raw record.")
    group_by: str = _f("", "Records with the same value of this dotted path stay in one split "
                       "(variants of one conversation never straddle splits).")
    oversample_train: bool = _f(False, "Oversample train (seeded) so every stratum is as "
                                "frequent as the largest; valid and test keep the natural ratio.")
    decontaminate: float | None = _f(0.8, "Drop train (and valid) records whose Jaccard "
                                     "similarity to a test (or valid) record reaches this; "
                                     "null = off.")


@dataclass(frozen=True)
class PrepareRecipe:
    name: str = _f("prepared", "Name of the dataset.")
    description: str = _f("", "What this dataset is for.")
    seed: int = _f(0, "Seeds mixing and splitting: same inputs + seed = byte-identical output.")
    tokenizer: str = _f("", "Model folder whose tokenizer measures answer lengths (needed by "
                        "min/max_answer_tokens; also gives token percentiles in metadata).")
    sources: list[SourceSpec] = _f([], "The raw inputs.")
    filters: FilterSpec = _f(FilterSpec, "Filters applied to every source (a source may "
                             "override keys).")
    mix: MixSpec = _f(MixSpec, "Mixing shares and replay.")
    split: SplitSpec = _f(SplitSpec, "Train/valid/test splitting.")
    output: str = _f("data/prepared/{name}", "Output folder; {name} is the dataset name.")

    @property
    def output_dir(self) -> str:
        return self.output.replace("{name}", self.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _lay_filters(tree: dict) -> dict:
    """Each source's filters = the top-level filters with the source's keys over them."""
    base = tree.get("filters") or {}
    sources = tree.get("sources")
    if isinstance(base, dict) and isinstance(sources, list):
        tree = dict(tree)
        tree["sources"] = [
            {**s, "filters": _merge(base, s.get("filters") or {})} if isinstance(s, dict) else s
            for s in sources]
    return tree


def load_prepare(path: str | Path | None, overrides=()) -> PrepareRecipe:
    """Read and validate a prepare recipe (the CLI's `data prepare PREP.yaml`)."""
    return load_typed(PrepareRecipe, path, overrides, _validate, _lay_filters)


def prepare_keys():
    """(dotted key, help, default) of every prepare-recipe key, for `eden-mlx data keys`."""
    return field_help(PrepareRecipe)


def _validate(r: PrepareRecipe, src) -> list[UserError]:
    """Cross-field checks, all collected, before any input is read."""
    e: list[UserError] = []

    def check(cond, key, msg, hint=None):
        if not cond:
            e.append(src.error(key, msg, hint))

    check(bool(r.sources), "sources", "needs at least one source",
          "e.g. sources: [{name: chats, type: jsonl, path: raw.jsonl}]")
    names = [s.name for s in r.sources]
    for i, s in enumerate(r.sources):
        k = f"sources.{i}"
        check(bool(s.name), f"{k}.name", "every source needs a name")
        check(names.count(s.name) == 1 or not s.name, f"{k}.name", f"{s.name!r} is used twice")
        check(bool(s.path), f"{k}.path", "every source needs a path")
        check(s.type != "sqlite" or bool(s.query.strip()), f"{k}.query",
              "a sqlite source needs a query", "e.g. SELECT * FROM messages")
        bad = [f for f in s.fields if f not in CONTENT_FIELDS]
        check(not bad, f"{k}.fields", f"unknown field name {', '.join(map(repr, bad))}",
              f"use names from {', '.join(CONTENT_FIELDS)}")
        check(not s.group_by or {"role", "content"} <= s.fields.keys(), f"{k}.group_by",
              "grouped rows are turns: map fields.role and fields.content")
        bad_roles = sorted(set(s.roles.values()) - {"system", "user", "assistant"})
        check(not bad_roles, f"{k}.roles", f"maps to unknown role {', '.join(bad_roles)}",
              "map raw roles to system, user or assistant")
        check(not s.system_prompts or bool(s.system_prompt_by), f"{k}.system_prompt_by",
              "system_prompts need system_prompt_by (the field whose value picks one)")
        for j, cond in enumerate(s.where):
            try:
                parse_condition(cond)
            except ValueError as err:
                e.append(src.error(f"{k}.where.{j}", str(err)))
        check(s.share is None or 0 <= s.share <= 1, f"{k}.share", "must be in [0, 1]")
        e += _check_filters(s.filters, f"{k}.filters", src, r.tokenizer)
    shares = [s.share for s in r.sources]
    if any(x is not None for x in shares):
        check(all(x is not None for x in shares), "sources",
              "give every source a share, or none (keep everything)")
        total = sum(x or 0 for x in shares)
        check(abs(total - 1) < 1e-6, "sources", f"shares sum to {total:g}, not 1",
              "e.g. 0.7/0.15/0.1/0.05; replay is mix.replay_share, on top")
    m, sp = r.mix, r.split
    check(0 <= m.replay_share < 1, "mix.replay_share", "must be in [0, 1)")
    check(not m.replay or m.replay_share > 0, "mix.replay_share", "replay files need a share")
    check(not m.replay_share or bool(m.replay), "mix.replay", "replay_share needs replay files")
    check(m.total is None or m.total > 0, "mix.total", "must be positive or null")
    check(len(sp.fractions) in (2, 3) and all(x >= 0 for x in sp.fractions)
          and abs(sum(sp.fractions) - 1) < 1e-6 and sp.fractions[0] > 0, "split.fractions",
          "must be [train, valid] or [train, valid, test] fractions summing to 1")
    check(not sp.oversample_train or bool(sp.stratify_by), "split.oversample_train",
          "oversampling needs split.stratify_by (the strata to balance)")
    check(sp.decontaminate is None or 0 < sp.decontaminate <= 1, "split.decontaminate",
          "must be in (0, 1] or null")
    return e


def _check_filters(f: FilterSpec, k: str, src, tokenizer: str) -> list[UserError]:
    e: list[UserError] = []

    def check(cond, key, msg, hint=None):
        if not cond:
            e.append(src.error(f"{k}.{key}", msg, hint))

    for key in ("min_hangul", "max_latin"):
        v = getattr(f, key)
        check(v is None or 0 <= v <= 1, key, "must be a share in [0, 1] or null")
    uses_tokens = f.min_answer_tokens is not None or f.max_answer_tokens is not None
    check(not uses_tokens or bool(tokenizer), "min_answer_tokens",
          "token-length filters need the recipe's tokenizer", "set tokenizer: MODEL_FOLDER")
    lo, hi = f.min_answer_tokens, f.max_answer_tokens
    check(lo is None or hi is None or lo <= hi, "max_answer_tokens", "must be >= min_answer_tokens")
    check(f.near_dedup is None or 0 < f.near_dedup <= 1, "near_dedup", "must be in (0, 1] or null")
    check(1 <= f.shingle <= 16, "shingle", "must be in [1, 16]")
    check(16 <= f.num_perm <= 512, "num_perm", "must be in [16, 512]")
    bad = [x for x in f.pii.kinds if x not in PII_KINDS]
    check(not bad, "pii.kinds", f"unknown kind {', '.join(map(repr, bad))}",
          f"use {', '.join(PII_KINDS)}")
    return e
