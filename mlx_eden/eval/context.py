"""What every suite needs: the loaded backend (adapter attached or not), the tokenizer, and
prompts rendered exactly as training rendered them (data/render.py's prompt_and_reference, the
same template and template options), plus greedy batched generation in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.formats import Record, read_jsonl
from ..data.preference import preferred_records
from ..data.prompting import stop_ids
from ..data.render import prompt_and_reference
from ..data.splits import read_splits
from ..errors import UserError


@dataclass
class EvalContext:
    recipe: object  # the resolved Recipe (template, system prompt, seed, labels)
    backend: object  # a Backend after setup(); its adapter is the one being evaluated
    tok: object
    model_dir: Path

    @property
    def stop(self) -> set[int]:
        """End of turn (<|im_end|> for ChatML) and EOS end an answer."""
        return stop_ids(self.tok)

    @property
    def pad_id(self) -> int:
        tok = self.tok
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def training_records(self, suite) -> list[Record]:
        """Records with answers (loss, classify): the suite's file, or a split of the run's data;
        preference records count by their preferred answer."""
        split = getattr(suite, "split", "")
        if split and not suite.data:
            records = read_splits(self.recipe.data, self.recipe.train.seed)[split]
        else:
            records = read_jsonl(suite.data, self.recipe.data.format)
        if split and not suite.data and not records:
            raise UserError(f"suite {suite.name!r}: the run's {split} split has no records",
                            key=f"data.{split}", hint=f"give data.{split} a file, or the suite a "
                            "data file")
        records = preferred_records(records)
        return records[: suite.limit] if suite.limit else records

    def prompt(self, record: Record) -> tuple[list[int], str]:
        """(prompt ids, reference answer) as training rendered the record."""
        ids, ref = prompt_and_reference(record, self.tok, self.recipe.data)
        return list(ids), ref

    def generate(self, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                 stop: set[int] | None = None) -> list[list[int]]:
        """Greedy continuations, `batch_size` prompts at a time. Prompts are grouped by length
        (less left padding) and the answers returned in the callers' order."""
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        out: list[list[int]] = [[] for _ in prompts]
        stop = self.stop if stop is None else stop
        for k in range(0, len(order), batch_size):
            chunk = order[k : k + batch_size]
            answers = self.backend.generate([prompts[i] for i in chunk], max_new_tokens, stop)
            for i, ids in zip(chunk, answers, strict=True):
                out[i] = list(ids)
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)
