"""eval.samples: a few prompts answered greedily right after every evaluation, so a user sees
the answers (their style, their language) drift while the run goes on, not only the loss.

The prompts are rendered once, as training renders a conversation (data/prompting.py); the
answers come from the backend's own greedy `generate`, the one the eval suites use."""

from __future__ import annotations

from ..data.prompting import conversation_ids, stop_ids, system_text, with_system
from ..recipe import Recipe, SampleSpec
from .events import SamplesEvent


def sample_specs(recipe: Recipe) -> list[SampleSpec]:
    """eval.samples with plain strings read as {prompt: ...}."""
    return [SampleSpec(prompt=s) if isinstance(s, str) else s for s in recipe.eval.samples]


class Sampler:
    """Called by the loop after an evaluation: SamplesEvent(step, [{prompt, style, answer,
    tokens}])."""

    def __init__(self, recipe: Recipe, tok, backend):
        self.tok, self.backend = tok, backend
        self.specs = sample_specs(recipe)
        self.max_new_tokens = recipe.eval.sample_tokens
        self.stop = stop_ids(tok)
        d = recipe.data
        self.prompts = [conversation_ids(tok, with_system(
            [{"role": "user", "content": s.prompt}], system_text(d.system_prompt, s.system,
                                                               s.style)), d.chat_template_args)
            for s in self.specs]

    def __call__(self, step: int) -> SamplesEvent:
        answers = self.backend.generate(self.prompts, self.max_new_tokens, self.stop)
        return SamplesEvent(step=step, samples=[
            {"prompt": s.prompt, "style": s.style,
             "answer": self.tok.decode(ids, skip_special_tokens=True), "tokens": len(ids)}
            for s, ids in zip(self.specs, answers, strict=True)])


def make_sampler(recipe: Recipe, tok, backend) -> Sampler | None:
    """The run's sampler, or None when the recipe has no eval.samples."""
    if not recipe.eval.samples:
        return None
    return Sampler(recipe, tok, backend)
