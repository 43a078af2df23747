"""The backend side of evaluation on the tiny model: prompts rendered exactly as training
rendered them, batched greedy generation equal to one prompt at a time and deterministic,
sequence_logprobs consistent with the training loss, and the torch backend agreeing with MLX."""

import numpy as np
import pytest

from mlx_eden.backends.base import load_backend
from mlx_eden.data.batching import BatchPlan
from mlx_eden.data.formats import read_jsonl
from mlx_eden.data.render import load_tokenizer, render_records
from mlx_eden.eval.context import EvalContext
from mlx_eden.eval.suitedata import read_prompts
from mlx_eden.eval.suites import RUNNERS
from mlx_eden.eval.suites.style import with_prefix
from mlx_eden.recipe import SUITE_KINDS, load_recipe

from .conftest import ROOT, SAMPLES, needs_torch
from .eval_fixtures import loud_lora  # noqa: F401

PROMPTS = SAMPLES / "eval" / "prompts.jsonl"


def context(model, backend: str, adapter=None, *sets) -> EvalContext:
    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml",
                         [f"model.path={model}", "model.dtype=float32", "adapter.rank=8",
                          "adapter.alpha=16", *sets])
    impl = load_backend(backend)
    impl.setup(recipe, model)
    if adapter is not None:
        impl.load_adapter(adapter)
    return EvalContext(recipe, impl, load_tokenizer(model), model)


@pytest.fixture(scope="module")
def mlx_ctx(tiny_qwen2, loud_lora):  # noqa: F811
    return context(tiny_qwen2, "mlx", loud_lora)


def test_every_declared_kind_has_a_runner_and_lists_its_keys():
    from mlx_eden.recipe import field_help

    assert set(RUNNERS) == set(SUITE_KINDS)
    keys = {row[0] for row in field_help()}
    assert {"eval.suites[generate].checks.hangul_ratio_min", "eval.suites[validate].command",
            "eval.suites[style].prefixes", "eval.gates", "eval.after_train"} <= keys


@pytest.mark.parametrize("sets", [[], ["data.system_prompt=Be brief."],
                                  ["data.template=alpaca"], ["data.template=none"]])
def test_eval_prompts_are_the_training_prefix(tokenizer, sets):
    """What eval asks is token for token what training showed before the answer."""
    spec = load_recipe(None, sets).data
    records = [*read_jsonl(SAMPLES / "chat" / "test.jsonl")[:12],
               *read_jsonl(SAMPLES / "classifier" / "test.jsonl")[:6],
               *read_jsonl(SAMPLES / "alpaca" / "test.jsonl")[:6]]
    ctx = EvalContext(load_recipe(None, sets), None, tokenizer, None)
    samples, _ = render_records(records, tokenizer, spec)
    for record, sample in zip(records, samples, strict=True):
        prompt, ref = ctx.prompt(record)
        assert list(sample.ids[: len(prompt)]) == prompt, record.where
        # the trained answer starts right where the prompt ends (earlier turns may be trained)
        assert not sample.mask[len(prompt) - 1] and sample.mask[len(prompt)]
        answer = tokenizer.decode(sample.ids[len(prompt):])
        assert answer.startswith(ref), record.where


def test_batched_generation_equals_one_at_a_time_and_repeats(mlx_ctx):
    prompts = [mlx_ctx.prompt(r)[0] for r in read_prompts(PROMPTS)]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    batched = mlx_ctx.generate(prompts, 10, batch_size=8)
    single = [mlx_ctx.backend.generate([p], 10, mlx_ctx.stop)[0] for p in prompts]
    assert batched == single and len({tuple(a) for a in batched}) > 3  # real, varied answers
    assert mlx_ctx.generate(prompts, 10, batch_size=3) == batched  # deterministic
    # a stop id ends the answer and is not part of it
    k, j = next((k, j) for k, a in enumerate(batched) for j in range(1, len(a))
                if a[j] not in a[:j])
    assert mlx_ctx.backend.generate([prompts[k]], 10, {batched[k][j]})[0] == batched[k][:j]


def test_sequence_logprobs_agree_with_the_training_loss(mlx_ctx):
    records = read_jsonl(SAMPLES / "chat" / "test.jsonl")[:6]
    samples, _ = render_records(records, mlx_ctx.tok, mlx_ctx.recipe.data)
    batch = BatchPlan(samples, 6, 512, mlx_ctx.pad_id).batch(0)
    sums, counts = mlx_ctx.backend.sequence_logprobs(batch)
    loss, tokens = mlx_ctx.backend.eval_loss(batch)
    assert sums.dtype == np.float64 and counts.dtype == np.int64 and sums.shape == (6,)
    assert counts.sum() == tokens
    assert -sums.sum() == pytest.approx(loss, rel=1e-5)
    assert (counts == batch.mask.sum(1)).all()


def test_style_prefix_lands_where_declared():
    r = read_prompts(PROMPTS)[0]
    sys_ = with_prefix(r, "<T>", "system").fields["messages"]
    assert sys_[0] == {"role": "system", "content": "<T>"}
    user = with_prefix(r, "<T>", "user").fields["messages"]
    assert user[0]["content"].startswith("<T> What is the capital")


@needs_torch
def test_torch_backend_agrees_with_mlx(mlx_ctx, tiny_qwen2, loud_lora):  # noqa: F811
    torch_ctx = context(tiny_qwen2, "torch", loud_lora, "train.backend=torch")
    records = read_jsonl(SAMPLES / "chat" / "test.jsonl")[:6]
    samples, _ = render_records(records, mlx_ctx.tok, mlx_ctx.recipe.data)
    batch = BatchPlan(samples, 6, 512, mlx_ctx.pad_id).batch(0)
    m_sums, m_counts = mlx_ctx.backend.sequence_logprobs(batch)
    t_sums, t_counts = torch_ctx.backend.sequence_logprobs(batch)
    assert (m_counts == t_counts).all()
    np.testing.assert_allclose(t_sums, m_sums, rtol=1e-4)
    prompts = [mlx_ctx.prompt(r)[0] for r in read_prompts(PROMPTS)]
    batched = torch_ctx.generate(prompts, 6, batch_size=8)
    assert batched == [torch_ctx.backend.generate([p], 6, torch_ctx.stop)[0] for p in prompts]
    assert batched == mlx_ctx.generate(prompts, 6, batch_size=8)
