"""MLX implementation of the Backend protocol: compiled micro-step and update, adapter and
optimizer state on disk, memory figures."""

from __future__ import annotations

import json
import resource
import sys
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_map_with_path

from ... import objectives as O
from ...adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapter_config,
    check_compatible,
    read_adapter_config,
)
from ...data.batching import Batch
from ...dtypes import mlx_cpu_half_warning, resolve_dtype
from ...errors import UserError
from ...recipe import Recipe
from ...registry import check_supported, dropout_seed
from ...tokens import plan_tokens
from ..base import MemoryProbe, ModelInfo, PhaseHook, StepResult, World, detect_world
from . import distributed as D
from . import evaluation as E
from . import loftq as L
from . import model as M
from . import objectives as P
from . import tokens as T
from .memory import apply_budget
from .optimizers import make_optimizer
from .update import evaluate_gradients, streamed_update

OPTIMIZER_STATE = "optimizer.safetensors"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # macOS: peak RSS is what getrusage offers (bytes there)
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024


class MLXBackend:
    """The Backend protocol on MLX; it is its own MemoryProbe (phases, peak reset, budget)."""

    name = "mlx"
    world = World()

    def setup(self, recipe: Recipe, model_dir: Path) -> ModelInfo:
        check_supported(recipe, self.name)
        self.recipe = recipe
        t = recipe.train
        self.world = D.join(detect_world())
        mx.random.seed(t.seed)
        fast_half = mx.default_device().type == mx.DeviceType.gpu  # Metal: native bf16/fp16
        stored = json.loads((Path(model_dir) / "config.json").read_text())
        dtype, dtype_reason = resolve_dtype(recipe.model.dtype, fast_half=fast_half,
                                            config=stored)
        self.model, self.config = M.load_base(model_dir, recipe.model, dtype)
        self.adapted = M.add_adapters(self.model, recipe)
        self.tokens = plan_tokens(recipe, model_dir)
        T.add_token_rows(self.model, self.tokens)
        self._loftq_file = None  # the last loftq_base.safetensors written (hard-link source)
        self.loftq_base = (L.initialize(self.model, model_dir, recipe, dtype)
                           if recipe.adapter.init == "loftq" else {})
        self.adapter_cfg = adapter_config(recipe, len(M.inner(self.model).layers), str(model_dir),
                                          dtype)
        if recipe.adapter.init_from:
            self.load_adapter(Path(recipe.adapter.init_from))
        self.optimizer = make_optimizer(recipe)
        self.optimizer.init(self.model.trainable_parameters())
        self._micro = self._eval = self._preference = None  # compiled on first use
        total, trainable = M.count_params(self.model)
        q = self.config.get("quantization")
        extra = {"adapted_modules": len(self.adapted), "dtype": dtype,
                 "dtype_reason": dtype_reason}
        slow = mlx_cpu_half_warning(dtype, fast_half)
        if slow:
            extra["dtype_note"] = slow  # shown as a warning by the loop (run/train.py)
        return ModelInfo(path=str(model_dir), model_type=self.config.get("model_type", "?"),
                         params_total=total, trainable_params=trainable,
                         quantized_bits=q.get("bits") if q else None, device=self.device(),
                         extra=extra)

    @staticmethod
    def device() -> str:
        info = mx.device_info() if hasattr(mx, "device_info") else {}
        name = info.get("device_name") or info.get("architecture") or ""
        return f"mlx {mx.default_device()} {name}".strip()

    # ------------------------------------------------------------------ compiled functions

    def _build(self):
        """Compile the micro-step (loss + grads) and the evaluation loss, one per layout
        (packed or not). Model and RNG state are captured by reference, so they must be fully
        initialised (and restored, on resume) before this. The optimizer update is not compiled:
        update.py applies it a group of parameters at a time to bound its memory."""
        t, model = self.recipe.train, self.model
        state = [model.state, mx.random.state]

        def micro(inputs, targets, weights, segments, *rows, packed):
            fn = partial(M.loss_sum, model, packed=packed, checkpoint=t.grad_checkpoint,
                         chunk=t.loss_chunk, blockwise=t.attention == "blockwise",
                         rows=rows[0] if rows else None)
            return nn.value_and_grad(model, fn)(inputs, targets, weights, segments)

        def evaluate(inputs, targets, weights, segments, *rows, packed):
            return M.loss_sum(model, inputs, targets, weights, segments, packed=packed,
                              checkpoint=False, chunk=t.loss_chunk, grad=False,
                              blockwise=t.attention == "blockwise",
                              rows=rows[0] if rows else None)

        self._micro = {p: mx.compile(partial(micro, packed=p), inputs=state, outputs=state)
                       for p in (False, True)}
        self._eval = {p: mx.compile(partial(evaluate, packed=p), inputs=state)
                      for p in (False, True)}

    @staticmethod
    def _arrays(b: Batch):
        return (mx.array(b.inputs), mx.array(b.targets), mx.array(b.mask), mx.array(b.segments))

    def _loss_arrays(self, b: Batch):
        """The loss's inputs; with `loss_positions`, also the flat trained positions (padded
        with position 0 at weight 0) and the targets and weights taken there."""
        arrays = self._arrays(b)
        if b.loss_positions is None:
            return arrays
        trained = np.flatnonzero(b.mask.reshape(-1) > 0).astype(np.int32)
        rows = np.zeros(max(b.loss_positions, len(trained)), np.int32)
        rows[: len(trained)] = trained
        targets, weights = b.targets.reshape(-1)[rows], b.mask.reshape(-1)[rows]
        weights[len(trained):] = 0.0
        return arrays[0], mx.array(targets), mx.array(weights), arrays[3], mx.array(rows)

    def train_step(self, batches: list[Batch], lr: float, step: int) -> StepResult:
        if self.recipe.train.objective != "sft":
            return self._preference_step(batches, lr, step)
        if self._micro is None:
            self._build()
        mx.random.seed(dropout_seed(self.recipe.train.seed, step))
        tokens = sum(b.trained_tokens for b in batches)
        loss, grads = None, None
        for b in batches:
            if not len(b.inputs):
                continue  # data parallel: this rank's share of a short last batch is empty
            part, g = self._micro[b.packed](*self._loss_arrays(b))
            self._phase("forward", part)
            loss = part if loss is None else loss + part
            grads = g if grads is None else tree_map(mx.add, grads, g)
            del part, g  # the accumulation adds in place instead of holding a third copy
            evaluate_gradients(loss, grads)  # bound memory to one micro-batch's graph
            self._phase("backward")
        if grads is None:  # every share was empty: this rank adds zeros to the all-reduce
            loss = mx.array(0.0)
            grads = tree_map(mx.zeros_like, self.model.trainable_parameters())
        timeout = self.recipe.train.distributed_timeout
        grads, loss, tokens, factor = D.all_sum_step(self.world, timeout, grads, loss, tokens)
        self.optimizer.learning_rate = lr
        norm = streamed_update(self.model, self.optimizer, grads, factor / tokens,
                               self.recipe.train.max_grad_norm)
        self._phase("update")
        return StepResult(loss=loss.item() / tokens, tokens=tokens, grad_norm=norm.item())

    def _preference_step(self, batches, lr: float, step: int) -> StepResult:
        """DPO/KTO (not compiled: the loss reads per-batch reference arrays); normalised by the
        items of all micro-batches."""
        if self._preference is None:
            self._preference = P.PreferenceSteps(self.model, self.recipe)
        mx.random.seed(dropout_seed(self.recipe.train.seed, step))
        loss, grads, sums = None, None, {}
        for b in batches:
            part, g, metrics = self._preference(b)
            loss = part if loss is None else loss + part
            grads = g if grads is None else tree_map(mx.add, grads, g)
            evaluate_gradients(loss, grads)
            O.add(sums, metrics, P.OPS.to_float)
            self._phase("backward")
        items = sum(b.items for b in batches)
        self.optimizer.learning_rate = lr
        norm = streamed_update(self.model, self.optimizer, grads, 1.0 / items,
                               self.recipe.train.max_grad_norm)
        self._phase("update")
        return StepResult(loss=loss.item() / items, tokens=sum(b.trained_tokens for b in batches),
                          grad_norm=norm.item(), metrics=O.finish(sums, items))

    def preference_logprobs(self, batch):
        self.model.eval()
        try:
            return np.array(P.row_logps(self.model, *P._arrays(batch))).astype(np.float64)
        finally:
            self.model.train()

    def preference_loss(self, batch) -> tuple[float, int, dict]:
        self.model.eval()
        try:
            total, metrics = P.loss_only(self.model, batch, self.recipe)
            return P.OPS.to_float(total), batch.items, O.add({}, metrics, P.OPS.to_float)
        finally:
            self.model.train()

    def eval_loss(self, batch: Batch) -> tuple[float, int]:
        if self._eval is None:
            self._build()
        self.model.eval()
        try:
            s = self._eval[batch.packed](*self._loss_arrays(batch))
            self._phase("eval", s)
            return s.item(), batch.trained_tokens
        finally:
            self.model.train()

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop: set[int]) -> list[list[int]]:
        """Greedy (deterministic) continuations of each prompt, batched, ending at a stop id
        (excluded)."""
        self.model.eval()
        try:
            return E.generate(self.model, prompts, max_new_tokens, stop)
        finally:
            self.model.train()

    def sequence_logprobs(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per row: (sum of log p(target) over the loss mask, count); no dropout, no grads."""
        self.model.eval()
        try:
            return E.sequence_logprobs(self.model, *self._arrays(batch), packed=batch.packed)
        finally:
            self.model.train()

    # ------------------------------------------------------------------ persistence

    def save_adapter(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(directory / ADAPTER_WEIGHTS), M.adapter_weights(self.model))
        (directory / ADAPTER_CONFIG).write_text(json.dumps(self.adapter_cfg, indent=2))
        T.save_token_rows(self.model, self.tokens, directory)
        if self.loftq_base:
            self._loftq_file = L.save_base(directory, self.loftq_base, self._loftq_file)

    def load_adapter(self, directory: Path) -> None:
        check_compatible(read_adapter_config(directory), self.adapter_cfg, str(directory))
        weights = mx.load(str(directory / ADAPTER_WEIGHTS))
        expected = M.adapter_weights(self.model)
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise UserError(f"adapter lacks {len(missing)} tensors, e.g. {missing[0]}",
                            file=str(directory / ADAPTER_WEIGHTS))
        wrong = [k for k in expected if weights[k].shape != expected[k].shape]
        if wrong:
            k = wrong[0]
            raise UserError(f"{k} has shape {tuple(weights[k].shape)}, this model needs "
                            f"{tuple(expected[k].shape)}", file=str(directory / ADAPTER_WEIGHTS),
                            hint="the adapter was trained on another model size")
        self.model.load_weights([(k, weights[k].astype(expected[k].dtype)) for k in expected],
                                strict=False)
        T.load_token_rows(self.model, self.tokens, directory)
        stored = L.apply_stored_base(self.model, directory, wrapped=True)
        self.loftq_base = stored or self.loftq_base  # saved again with this run's adapters
        mx.eval(self.model.trainable_parameters())

    def save_state(self, directory: Path) -> None:
        flat = dict(tree_flatten(self.optimizer.state))
        mx.save_safetensors(str(directory / OPTIMIZER_STATE), flat)

    def load_state(self, directory: Path) -> None:
        self.load_adapter(directory)
        flat = mx.load(str(directory / OPTIMIZER_STATE))
        # Fill the leaves of the state setup() initialised rather than rebuilding the tree from
        # the file: flattening drops empty containers (e.g. the frozen embed_tokens' {}), and
        # the optimizer's update walks the gradient tree, which still has them.
        restored = tree_map_with_path(lambda path, leaf: flat.get(path, leaf),
                                      self.optimizer.state)
        unknown = sorted(set(flat) - {k for k, _ in tree_flatten(restored)})
        if unknown:
            raise UserError(f"optimizer state has {len(unknown)} tensors this model lacks, e.g. "
                            f"{unknown[0]}", file=str(directory / OPTIMIZER_STATE))
        # Update in place: compiled functions hold a reference to this dict.
        self.optimizer.state.clear()
        self.optimizer.state.update(restored)
        mx.eval(self.optimizer.state)

    def gather(self, value: int) -> list[int]:
        return D.gather(self.world, self.recipe.train.distributed_timeout, value)

    def memory(self) -> dict:
        return {"active": mx.get_active_memory(), "peak": max(self._run_peak, mx.get_peak_memory()),
                "cache": mx.get_cache_memory(), "rss": _rss_bytes()}

    # ------------------------------------------------------------------ memory probe

    _hook: PhaseHook | None = None  # the profiler's, see mlx_eden/run/profiler.py
    _run_peak = 0

    def memory_probe(self) -> MemoryProbe:
        return self

    def set_phase_hook(self, hook: PhaseHook | None) -> None:
        self._hook = hook

    def _phase(self, name: str, *evaluate) -> None:
        """Tell the profiler a phase ended (evaluating `evaluate` first, so the forward pass
        is measured apart from the backward: the loss alone needs only the forward)."""
        if self._hook is not None:
            mx.eval(*evaluate)
            self._hook(name)

    def phase_memory(self) -> dict:
        """Memory now and the peak since the last call; keeps the run's peak for memory()."""
        figures = self.memory()
        figures["peak"] = mx.get_peak_memory()
        self._run_peak = max(self._run_peak, figures["peak"])
        mx.reset_peak_memory()
        return figures

    def set_budget(self, budget_bytes: int) -> dict:
        """MLX's memory limit (and on Metal the wired limit) from the planner's budget."""
        return apply_budget(budget_bytes)


def create() -> MLXBackend:
    return MLXBackend()
