"""PyTorch CPU implementation of the Backend protocol (the fast path on x86 servers).

Mirrors backends/mlx/backend.py step for step: summed loss over all micro-batches, gradients
scaled by 1/trained tokens, global-norm clipping reporting the pre-clip norm, dropout seeded by
(seed, step) so a resumed run draws the same masks, adapter and optimizer state on disk in the MLX
backend's layout (plus a PEFT copy of the adapter under adapter/peft/).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ... import objectives as O
from ...adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    PEFT_DIR,
    adapter_config,
    check_compatible,
    read_adapter_config,
)
from ...data.batching import Batch
from ...recipe import Recipe
from ...registry import check_supported, dropout_seed
from ...tokens import plan_tokens
from ..base import MemoryProbe, ModelInfo, StepResult, World, detect_world
from . import adapter_io as io
from . import distributed as D
from . import evaluation as E
from . import model as M
from . import objectives as P
from . import tokens as T
from .optimizers import make_optimizer, set_learning_rate, state_from_mlx, state_to_mlx

OPTIMIZER_STATE = "optimizer.safetensors"


def _rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set size. On CPU, torch's tensors live in the process heap, so
    RSS is the honest memory figure (there is no separate device allocator to ask)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize(), peak
    except OSError:
        return peak, peak


class TorchBackend:
    """The Backend protocol on PyTorch (CPU). No MemoryProbe: on CPU only the process RSS is
    known, and memory() reports it."""

    name = "torch"
    world = World()

    def setup(self, recipe: Recipe, model_dir: Path) -> ModelInfo:
        check_supported(recipe, self.name)
        self.recipe = recipe
        t = recipe.train
        self.world = D.join(detect_world(), t.distributed_timeout)
        self.threads = M.cpu_threads(t.num_threads)
        torch.set_num_threads(self.threads)
        torch.manual_seed(t.seed)
        self.dtype, dtype_reason, dtype_note = M.compute_dtype(recipe.model.dtype)
        base, self.config = M.load_base(model_dir, recipe.model, self.dtype)
        self.tokens = plan_tokens(recipe, model_dir)
        self.model, adapted = M.add_adapters(base, recipe, T.token_indices(self.tokens, base))
        T.init_rows(self.model, self.tokens)
        self.lm = M.causal_lm(self.model)
        if t.grad_checkpoint:
            M.enable_checkpointing(self.lm)
        self.model.train()
        self.params = io.trainable_by_mlx_name(self.lm)
        n_layers = self.lm.config.num_hidden_layers
        self.adapter_cfg = adapter_config(recipe, n_layers, str(model_dir))
        if recipe.adapter.init_from:
            self.load_adapter(Path(recipe.adapter.init_from))
        self.optimizer = make_optimizer(recipe, [p for p, _ in self.params.values()])
        self.steps_done = 0
        total, trainable = M.count_params(self.model)
        extra = {"adapted_modules": len(adapted), "threads": self.threads,
                 "dtype": str(self.dtype).removeprefix("torch."),
                 "dtype_reason": dtype_reason}
        if dtype_note:
            extra["dtype_note"] = dtype_note
        return ModelInfo(path=str(model_dir), model_type=self.config.get("model_type", "?"),
                         params_total=total, trainable_params=trainable, quantized_bits=None,
                         device=self.device(), extra=extra)

    def device(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"torch {torch.__version__} cpu {M.cpu_name()} ({self.threads} threads, {dtype})"

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _tensors(b: Batch):
        return (torch.from_numpy(b.inputs).long(), torch.from_numpy(b.targets).long(),
                torch.from_numpy(b.mask), torch.from_numpy(b.segments))

    def _loss_sum(self, b: Batch) -> torch.Tensor:
        return M.loss_sum(self.model, *self._tensors(b), packed=b.packed,
                          chunk=self.recipe.train.loss_chunk)

    def train_step(self, batches: list[Batch], lr: float, step: int) -> StepResult:
        t = self.recipe.train
        torch.manual_seed(dropout_seed(t.seed, step))
        tokens = sum(b.trained_tokens for b in batches)
        params = [p for p, _ in self.params.values()]
        self.optimizer.zero_grad(set_to_none=True)
        loss, sums = 0.0, {}
        preference = t.objective != "sft"
        for b in batches:  # backward per micro-batch: memory holds one micro-batch's graph
            if not len(b.inputs):
                continue  # data parallel: this rank's share of a short last batch is empty
            if preference:
                part, metrics = P.batch_loss(self.model, b, self.recipe)
                O.add(sums, metrics, P.OPS.to_float)
            else:
                part = self._loss_sum(b)
            part.backward()
            loss += part.item()
        trained = tokens
        if preference:  # DPO/KTO: the mean over items (pairs / answers), as TRL
            tokens = sum(b.items for b in batches)
        loss, (tokens, trained) = D.all_sum_step(self.world, params, loss, [tokens, trained])
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(1.0 / tokens)
        if t.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params
                             if p.grad is not None]))
        set_learning_rate(self.optimizer, lr)
        self.optimizer.step()
        self.steps_done = step
        return StepResult(loss=loss / tokens, tokens=trained, grad_norm=float(norm),
                          metrics=O.finish(sums, tokens) if preference else {})

    def eval_loss(self, batch: Batch) -> tuple[float, int]:
        self.model.eval()
        try:
            with torch.inference_mode():
                return self._loss_sum(batch).item(), batch.trained_tokens
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
            return E.sequence_logprobs(self.model, *self._tensors(batch), packed=batch.packed)
        finally:
            self.model.train()

    def preference_logprobs(self, batch):
        self.model.eval()
        try:
            with torch.inference_mode():
                return P.row_logps(self.model, *P._tensors(batch)).double().numpy()
        finally:
            self.model.train()

    def preference_loss(self, batch) -> tuple[float, int, dict]:
        self.model.eval()
        try:
            with torch.inference_mode():
                total, metrics = P.batch_loss(self.model, batch, self.recipe)
            return float(total), batch.items, O.add({}, metrics, P.OPS.to_float)
        finally:
            self.model.train()

    # ------------------------------------------------------------------ persistence

    def save_adapter(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file(io.adapter_tensors(self.params), str(directory / ADAPTER_WEIGHTS))
        (directory / ADAPTER_CONFIG).write_text(json.dumps(self.adapter_cfg, indent=2))
        T.save_rows(self.params, self.tokens, self.lm, directory)
        io.save_peft(self.model, directory / PEFT_DIR, self.recipe.model.path)

    def load_adapter(self, directory: Path) -> None:
        """An adapter in mlx-lm format, written by either backend."""
        check_compatible(read_adapter_config(directory), self.adapter_cfg, str(directory))
        weights = load_file(str(directory / ADAPTER_WEIGHTS))
        io.load_adapter_tensors(self.params, weights, str(directory / ADAPTER_WEIGHTS))
        T.load_rows(self.params, self.tokens, directory)

    def save_state(self, directory: Path) -> None:
        flat = state_to_mlx(self.optimizer, self.recipe.train.optimizer, self.params,
                            self.steps_done)
        save_file(flat, str(directory / OPTIMIZER_STATE))

    def load_state(self, directory: Path) -> None:
        self.load_adapter(directory)
        flat = load_file(str(directory / OPTIMIZER_STATE))
        self.steps_done = state_from_mlx(self.optimizer, self.recipe.train.optimizer,
                                         self.params, flat)

    def gather(self, value: int) -> list[int]:
        return D.gather(self.world, value)

    def memory(self) -> dict:
        rss, peak = _rss_bytes()
        return {"active": rss, "peak": peak, "cache": 0, "rss": rss}

    def memory_probe(self) -> MemoryProbe | None:
        return None


def create() -> TorchBackend:
    return TorchBackend()
