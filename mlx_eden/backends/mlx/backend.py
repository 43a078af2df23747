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
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map, tree_map_with_path

from ...adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapter_config,
    check_compatible,
    read_adapter_config,
)
from ...data.batching import Batch
from ...errors import UserError
from ..base import ModelInfo, StepResult
from . import model as M
from .optimizers import make_optimizer

OPTIMIZER_STATE = "optimizer.safetensors"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # macOS: peak RSS is what getrusage offers (bytes there)
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024


class MLXBackend:
    name = "mlx"

    def setup(self, recipe, model_dir: Path) -> ModelInfo:
        self.recipe = recipe
        t = recipe.train
        mx.random.seed(t.seed)
        self.model, self.config = M.load_base(model_dir, recipe.model)
        self.adapted = M.add_adapters(self.model, recipe)
        self.adapter_cfg = adapter_config(recipe, len(M.inner(self.model).layers), str(model_dir))
        if recipe.adapter.init_from:
            self.load_adapter(Path(recipe.adapter.init_from))
        self.optimizer = make_optimizer(t)
        self.optimizer.init(self.model.trainable_parameters())
        self._compiled = None
        total, trainable = M.count_params(self.model)
        q = self.config.get("quantization")
        return ModelInfo(path=str(model_dir), model_type=self.config.get("model_type", "?"),
                         params_total=total, trainable_params=trainable,
                         quantized_bits=q.get("bits") if q else None, device=self.device(),
                         extra={"adapted_modules": len(self.adapted)})

    @staticmethod
    def device() -> str:
        info = mx.device_info() if hasattr(mx, "device_info") else {}
        name = info.get("device_name") or info.get("architecture") or ""
        return f"mlx {mx.default_device()} {name}".strip()

    # ------------------------------------------------------------------ compiled functions

    def _build(self):
        """Compile the micro-step (loss + grads) and the update; state is captured by
        reference, so it must be fully initialised (and restored, on resume) before this."""
        t, model, opt = self.recipe.train, self.model, self.optimizer
        state = [model.state, opt.state, mx.random.state]

        def micro(inputs, targets, weights, segments, packed):
            fn = partial(M.loss_sum, model, packed=packed, checkpoint=t.grad_checkpoint,
                         chunk=t.loss_chunk)
            return nn.value_and_grad(model, fn)(inputs, targets, weights, segments)

        @partial(mx.compile, inputs=state, outputs=state)
        def update(grads, scale):
            grads = tree_map(lambda g: g * scale, grads)
            if t.max_grad_norm:
                grads, norm = optim.clip_grad_norm(grads, t.max_grad_norm)
            else:
                norm = mx.sqrt(sum((g.astype(mx.float32) ** 2).sum()
                                   for _, g in tree_flatten(grads)))
            opt.update(model, grads)
            return norm

        def evaluate(inputs, targets, weights, segments, packed):
            return M.loss_sum(model, inputs, targets, weights, segments, packed=packed,
                              checkpoint=False, chunk=t.loss_chunk, grad=False)

        compiled = {p: mx.compile(partial(micro, packed=p), inputs=state, outputs=state)
                    for p in (False, True)}
        compiled_eval = {p: mx.compile(partial(evaluate, packed=p), inputs=state)
                         for p in (False, True)}
        self._compiled = (compiled, update, compiled_eval)

    @staticmethod
    def _arrays(b: Batch):
        return (mx.array(b.inputs), mx.array(b.targets), mx.array(b.mask), mx.array(b.segments))

    def train_step(self, batches: list[Batch], lr: float, step: int) -> StepResult:
        if self._compiled is None:
            self._build()
        micro, update, _ = self._compiled
        # Dropout masks depend only on (seed, step): a resumed run draws the same ones.
        mx.random.seed(self.recipe.train.seed * 1_000_003 + step)
        tokens = sum(b.trained_tokens for b in batches)
        loss, grads = None, None
        for i, b in enumerate(batches):
            part, g = micro[b.packed](*self._arrays(b))
            loss = part if loss is None else loss + part
            grads = g if grads is None else tree_map(mx.add, grads, g)
            if i + 1 < len(batches):
                mx.eval(loss, grads)  # bound memory to one micro-batch's graph
        self.optimizer.learning_rate = lr
        norm = update(grads, mx.array(1.0 / tokens, dtype=mx.float32))
        mx.eval(norm, self.model.trainable_parameters(), self.optimizer.state)
        return StepResult(loss=loss.item() / tokens, tokens=tokens, grad_norm=norm.item())

    def eval_loss(self, batch: Batch) -> tuple[float, int]:
        if self._compiled is None:
            self._build()
        self.model.eval()
        try:
            s = self._compiled[2][batch.packed](*self._arrays(batch))
            return s.item(), batch.trained_tokens
        finally:
            self.model.train()

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop: set[int]) -> list[list[int]]:
        """Greedy (deterministic) continuations of each prompt, ending at a stop id."""
        from mlx_lm.generate import generate_step

        self.model.eval()
        try:
            out = []
            for ids in prompts:
                tokens = []
                for token, _ in generate_step(mx.array(ids), self.model,
                                              max_tokens=max_new_tokens):  # no sampler: argmax
                    token = int(token)
                    if token in stop:
                        break
                    tokens.append(token)
                out.append(tokens)
            return out
        finally:
            self.model.train()

    # ------------------------------------------------------------------ persistence

    def save_adapter(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(directory / ADAPTER_WEIGHTS), M.adapter_weights(self.model))
        (directory / ADAPTER_CONFIG).write_text(json.dumps(self.adapter_cfg, indent=2))

    def load_adapter(self, directory: Path) -> None:
        check_compatible(read_adapter_config(directory), self.adapter_cfg, str(directory))
        weights = mx.load(str(directory / ADAPTER_WEIGHTS))
        expected = M.adapter_weights(self.model)
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise UserError(f"adapter lacks {len(missing)} tensors, e.g. {missing[0]}",
                            file=str(directory / ADAPTER_WEIGHTS))
        self.model.load_weights([(k, weights[k].astype(expected[k].dtype)) for k in expected],
                                strict=False)
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

    def memory(self) -> dict:
        return {"active": mx.get_active_memory(), "peak": mx.get_peak_memory(),
                "cache": mx.get_cache_memory(), "rss": _rss_bytes()}


def create() -> MLXBackend:
    return MLXBackend()
