"""Control tokens in spare embedding rows (recipe `tokens.add`): which ids they take, the
tokenizer that encodes each as one id, and their files in the adapter folder.

Qwen's checkpoints have more embedding rows than their tokenizer produces (151,936 rows for
151,665 ids in Qwen2.5, 151,669 in Qwen3), so new tokens take the next unused rows and nothing is
resized: only those rows train (a (n, D) float32 tensor, plus the lm_head rows when the head is
untied), and they are saved beside the adapter as tokens.safetensors + tokens.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .safeio import read_json_object

TOKENS_FILE = "tokens.json"  # {"tokens": [...], "first_id": n, "tied": bool}
TOKEN_ROWS = "tokens.safetensors"  # "embed" (n, D) and, for an untied head, "head" (n, D)


@dataclass(frozen=True)
class TokenPlan:
    """Where the recipe's new tokens go: ids first_id .. first_id + len(tokens) - 1."""

    tokens: tuple[str, ...]
    first_id: int
    init_ids: tuple[int, ...] | None  # rows averaged for the start value; None = all used rows

    @property
    def ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + len(self.tokens)))


def embedding_rows(model_dir: str | Path) -> int:
    """Rows of the model's embedding (config.json vocab_size)."""
    cfg = read_json_object(Path(model_dir) / "config.json", "config.json")
    return int(cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size"))


def add_tokens(tok, tokens, rows: int) -> int:
    """Add `tokens` to a Hugging Face tokenizer as special tokens (one id each, never split or
    normalised) in the next ids after its own; return the first new id. Refuses when the model
    has fewer than len(tokens) spare rows. Tokens the tokenizer already has (a second call) keep
    their ids."""
    from tokenizers import AddedToken

    tokens = list(tokens)
    if not tokens:
        return len(tok)
    have = tok.get_added_vocab()
    if all(t in have for t in tokens):
        return have[tokens[0]]
    first = len(tok)
    spare = rows - first
    if spare < len(tokens):
        raise UserError(f"the model has {max(spare, 0)} spare embedding rows ({rows} rows, "
                        f"{first} tokenizer ids); tokens.add needs {len(tokens)}",
                        key="tokens.add", hint="add fewer tokens, or use a base with spare rows "
                        "(Qwen2.5/Qwen3 have 271+; `eden-mlx tiny --spare N`)")
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in tokens],
                   special_tokens=True)
    ids = tok.convert_tokens_to_ids(tokens)
    if ids != list(range(first, first + len(tokens))):
        raise UserError(f"tokens.add {tokens} got ids {ids}, not the next ones from {first}",
                        key="tokens.add", hint="list tokens the tokenizer does not know yet")
    return first


def plan_tokens(recipe, model_dir: str | Path) -> TokenPlan | None:
    """The recipe's tokens with their ids and init rows; None when tokens.add is empty."""
    from .data.render import load_tokenizer

    if not recipe.tokens.add:
        return None
    tok = load_tokenizer(model_dir)
    init = recipe.tokens.init
    init_ids = None
    if init != "mean":
        init_ids = tuple(tok(init, add_special_tokens=False)["input_ids"])
    first = add_tokens(tok, recipe.tokens.add, embedding_rows(model_dir))
    return TokenPlan(tuple(recipe.tokens.add), first, init_ids)


def recipe_tokenizer(recipe, model_dir: str | Path):
    """The model's tokenizer with the recipe's tokens.add: what training, data check and
    evaluation encode with."""
    from .data.render import load_tokenizer

    tok = load_tokenizer(model_dir)
    add_tokens(tok, recipe.tokens.add, embedding_rows(model_dir))
    return tok


def tokens_info(plan: TokenPlan, tied: bool) -> dict:
    return {"tokens": list(plan.tokens), "first_id": plan.first_id, "tied": tied}


def read_tokens(adapter_dir: str | Path) -> dict | None:
    """tokens.json of an adapter folder, or None when the adapter adds no tokens."""
    path = Path(adapter_dir) / TOKENS_FILE
    if not path.is_file():
        return None
    info = read_json_object(path, TOKENS_FILE)
    if not (Path(adapter_dir) / TOKEN_ROWS).is_file():
        raise UserError(f"{TOKENS_FILE} without {TOKEN_ROWS}", file=str(adapter_dir),
                        hint="copy the whole adapter folder")
    return info


def check_same_tokens(saved: dict | None, plan: TokenPlan | None, where: str) -> None:
    """An adapter loaded into a run must add the same tokens at the same ids as its recipe."""
    have = (saved or {}).get("tokens", [])
    want = list(plan.tokens) if plan else []
    if have != want:
        raise UserError(f"the adapter adds tokens {have}, the recipe's tokens.add is {want}",
                        file=where, hint=f"set tokens.add: {json.dumps(have)} in the recipe")
    if plan and saved.get("first_id") != plan.first_id:
        raise UserError(f"the adapter's tokens start at id {saved.get('first_id')}, this model's "
                        f"at {plan.first_id}", file=where,
                        hint="use the base model the adapter was trained on")


def add_to_folder(folder: Path, info: dict) -> None:
    """Fuse/export: add the adapter's tokens to the tokenizer files of `folder` as special tokens
    at the ids they trained (tokenizer.json added_tokens, tokenizer_config.json
    added_tokens_decoder, added_tokens.json when present).

    Edited in place rather than by `save_pretrained`: transformers 5 rewrites tokenizer_config.json
    in its own schema (no added_tokens_decoder, extra_special_tokens), which older readers
    (vLLM's pinned transformers, llama.cpp's converter) read differently from the base's files."""
    folder = Path(folder)
    tokens, first = list(info["tokens"]), int(info["first_id"])
    ids = range(first, first + len(tokens))
    entry = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
    path = folder / "tokenizer.json"
    tj = read_json_object(path, "tokenizer.json")
    have = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    used = max([*have.values(), *tj.get("model", {}).get("vocab", {}).values(), -1]) + 1
    if used != first and any(t not in have for t in tokens):
        raise UserError(f"the adapter's tokens trained at id {first}, this base's tokenizer "
                        f"would put them at {used}", file=str(folder),
                        hint="use the base model the adapter was trained on")
    tj["added_tokens"] = [t for t in tj.get("added_tokens", []) if t["content"] not in tokens] + [
        {"id": i, "content": t, **entry} for i, t in zip(ids, tokens, strict=True)]
    path.write_text(json.dumps(tj, ensure_ascii=False, indent=2), encoding="utf-8")
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = read_json_object(cfg_path, "tokenizer_config.json")
        if "added_tokens_decoder" in cfg:
            cfg["added_tokens_decoder"].update(
                {str(i): {"content": t, **entry} for i, t in zip(ids, tokens, strict=True)})
        extra = cfg.get("additional_special_tokens")
        if isinstance(extra, list):
            cfg["additional_special_tokens"] = extra + [t for t in tokens if t not in extra]
        cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    added = folder / "added_tokens.json"
    if added.is_file():
        a = read_json_object(added, "added_tokens.json")
        a.update(dict(zip(tokens, ids, strict=True)))
        added.write_text(json.dumps(a, ensure_ascii=False, indent=2), encoding="utf-8")
