"""Recipes: one typed declaration per option.

A recipe is YAML read strictly into a tree of frozen dataclasses. Each field carries its default
and its help text once (in `field(metadata={"help": ...})`); the YAML reader, `--set` overrides,
`eden-mlx recipe show` and the docs all derive from that single declaration. Validation collects
every problem (with file, line and key) and raises once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import UserError, UserErrors
from .evalspec import (  # noqa: F401  (re-exported: one place to import recipe types from)
    SUITE_KINDS,
    ChecksSpec,
    ChoiceSuite,
    ClassifySuite,
    GateSpec,
    GenerateSuite,
    LatencySuite,
    LossSuite,
    StyleSuite,
    SuiteBase,
    ValidateSuite,
    validate_eval,
)
from .fields import _f
from .qwen import PROJECTIONS, TARGET_PRESETS
from .registry import QUANT_BITS, QUANT_GROUPS


@dataclass(frozen=True)
class QuantizeSpec:
    bits: int | None = _f(None, "Quantize the base at load time to this many bits (QLoRA); "
                             "null keeps it as stored (an MLX-quantized folder stays quantized).")
    group_size: int = _f(64, "Quantization group size (MLX affine).")


@dataclass(frozen=True)
class ModelSpec:
    path: str = _f("", "Local model folder or Hugging Face Hub id.")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) when path is a hub id.")
    quantize: QuantizeSpec = _f(QuantizeSpec, "Base-weight quantization for QLoRA.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _f(
        "auto", "Compute dtype of the (non-quantized) base weights and activations. auto: the "
        "checkpoint's own dtype on Metal, float32 on MLX's CPU backend (no fast CPU bf16: 7x "
        "slower), bfloat16 on the torch backend where the CPU has native bf16 (AVX512-BF16/AMX), "
        "else float32. Adapter weights and optimizer state always train in float32.")
    trust_remote_code: bool = _f(False, "Allow model code from the hub (torch backend only).")


@dataclass(frozen=True)
class AdapterSpec:
    type: Literal["lora", "dora"] = _f("lora", "Adapter type.")
    rank: int = _f(8, "LoRA rank r.")
    alpha: float = _f(16.0, "LoRA alpha; the update is scaled by alpha/rank (alpha/sqrt(rank) "
                      "with rslora).")
    rslora: bool = _f(False, "Rank-stabilised scaling alpha/sqrt(rank).")
    dropout: float = _f(0.0, "Dropout on the adapter input.")
    targets: list[str] = _f(list(PROJECTIONS), "Projections to adapt: names from "
                            f"{', '.join(PROJECTIONS)}, or a preset: all, attention, mlp.")
    layers: int = _f(-1, "Adapt the last N decoder layers; -1 = all.")
    init_from: str | None = _f(None, "Start from this adapter folder (a previous round or "
                                  "stage) instead of fresh weights.")
    init: Literal["default", "loftq"] = _f(
        "default", "How fresh adapter weights start: default (A random, B zero: base + adapter "
        "= the quantized base) or loftq (QLoRA from a float checkpoint: A and B from a rank-r "
        "SVD of each layer's quantization error, so base + adapter starts closer to the float "
        "weights; mlx backend, needs model.quantize.bits).")
    loftq_iters: int = _f(1, "LoftQ alternations of quantize and SVD. 1: the base is the plain "
                          "quantized base; more: the base changes too and is stored with the "
                          "adapter (loftq_base.safetensors).")

    @property
    def scale(self) -> float:
        """The multiplier on B@A: alpha/r, or alpha/sqrt(r) for rsLoRA."""
        return self.alpha / (self.rank ** 0.5 if self.rslora else self.rank)

    @property
    def target_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for t in self.targets:
            for n in TARGET_PRESETS.get(t, (t,)):
                if n not in names:
                    names.append(n)
        return tuple(names)


@dataclass(frozen=True)
class TrainSource:
    path: str = _f("", "A training JSONL file, or a `data prepare` folder (its train.jsonl).")
    weight: float = _f(1.0, "Share of each epoch drawn from this file, relative to the other "
                       "entries' weights (positive; e.g. 0.92 and 0.08).")


@dataclass(frozen=True)
class DataSpec:
    train: list[str | TrainSource] = _f(
        [], "Training JSONL file(s), or a `data prepare` output folder (its train.jsonl, and "
        "valid/test.jsonl when present). Entries may be {path, weight} for weighted mixing "
        "(replay): an epoch is as many samples as the sources hold together, each source's "
        "count set by its share of the weights; a source is drawn without replacement in a "
        "seeded order (train.seed) and starts over only once it is used up. The mix is drawn "
        "once per run; every epoch then reshuffles it. run.json records the count per source.")
    valid: list[str] = _f([], "Validation JSONL file(s); empty = split off train per data.split.")
    test: list[str] = _f([], "Test JSONL file(s).")
    split: list[float] = _f([], "When only train is given: fractions [train, valid, test], "
                            "e.g. [0.8, 0.1, 0.1]; the split is seeded by train.seed.")
    format: Literal["auto", "chat", "alpaca", "completions", "text", "dpo", "kto"] = _f(
        "auto", "Record format; auto detects it per file from the keys of the records.")
    template: Literal["chat", "alpaca", "none"] = _f(
        "chat", "How records become text: the tokenizer's chat template, the classic Alpaca "
        "prompt (+EOS), or none (prompt+completion+EOS concatenated).")
    system_prompt: str | None = _f(None, "System message prepended to chat-rendered records "
                                      "that have none.")
    chat_template_args: dict = _f({}, "Extra variables for the chat template, used alike by "
                                  "training, data check, eval and export ollama, e.g. "
                                  "{enable_thinking: false}. A template that reads enable_thinking "
                                  "(Qwen3) gets false unless set here: non-thinking chat.")
    reasoning: Literal["keep", "strip"] = _f(
        "keep", "Assistant content with a <think>...</think> block: keep (rendered as the template "
        "does, and trained) or strip (removed before rendering; only the answer is trained).")
    max_seq_length: int = _f(2048, "Longest sample in tokens (no row, packed or not, is longer).")
    truncation: Literal["truncate", "drop"] = _f("truncate", "What to do with longer samples.")
    mask_prompt: bool = _f(True, "Train only on assistant/response tokens (every assistant turn).")
    packing: bool = _f(False, "Pack several samples per row (each attends only to itself); a "
                       "batch is as wide as its longest sample, shorter ones fill the gaps.")
    style_tokens: dict[str, str] = _f({}, "Records with a `style` field get the mapped token "
                                      "prepended to their (last) user turn, e.g. {TERSE: "
                                      "\"<STYLE_TERSE>\"}; tokens from tokens.add.")
    balance: bool = _f(False, "Oversample the train split so every label (final answer) is "
                       "equally frequent: for classifiers with skewed classes.")


@dataclass(frozen=True)
class TokensSpec:
    add: list[str] = _f([], "New control tokens, e.g. [\"<STYLE_TERSE>\", \"<STYLE_VERBOSE>\"]: "
                        "each takes the next spare embedding row after the tokenizer's ids (no "
                        "resize), encodes as one id, and only those rows train (saved with the "
                        "adapter).")
    init: str = _f("mean", "Start value of the new rows: mean (of all used embedding rows) or a "
                   "text whose tokens' embeddings are averaged, e.g. \"concise\".")


@dataclass(frozen=True)
class EarlyStoppingSpec:
    patience: int | None = _f(None, "Stop after this many evaluations without improvement; "
                                 "null = never stop early.")
    min_delta: float = _f(0.0, "An evaluation improves when val loss drops by more than this.")


@dataclass(frozen=True)
class TrainSpec:
    backend: Literal["auto", "mlx", "torch"] = _f(
        "auto", "auto = mlx on Apple Silicon, torch on other machines when installed, else mlx.")
    max_steps: int | None = _f(None, "Optimizer steps to run; overrides epochs when set.")
    epochs: float = _f(1.0, "Passes over the training data (when max_steps is null).")
    batch_size: int = _f(4, "Micro-batch size (rows per forward pass).")
    grad_accumulation: int = _f(1, "Micro-batches per optimizer step.")
    learning_rate: float = _f(1e-4, "Peak learning rate.")
    schedule: Literal["constant", "linear", "cosine"] = _f("cosine", "Decay after warmup.")
    warmup_steps: int = _f(0, "Linear warmup steps (exclusive with warmup_ratio).")
    warmup_ratio: float = _f(0.0, "Warmup as a fraction of the total steps.")
    min_lr_ratio: float = _f(0.0, "Final learning rate as a fraction of the peak.")
    weight_decay: float = _f(0.0, "Decoupled weight decay (adamw) or L2 (sgd).")
    max_grad_norm: float | None = _f(1.0, "Clip the global gradient norm; null = no clipping.")
    optimizer: Literal["adamw", "adamw8bit", "adam", "adafactor", "sgd"] = _f(
        "adamw", "Optimizer. adamw8bit keeps AdamW's moments in 8 bits (2.1 bytes of state per "
        "trainable value instead of 8); adafactor keeps factored second moments only.")
    grad_checkpoint: bool = _f(False, "Recompute each decoder layer in the backward pass.")
    loss_chunk: int = _f(0, "Compute the loss over this many tokens at a time so the full "
                         "batch x sequence x vocabulary logits never exist; 0 = off.")
    attention: Literal["blockwise", "fused"] = _f(
        "blockwise", "MLX attention in training and evaluation: blockwise keeps no batch x "
        "heads x length^2 scores for backward (recomputes them a block of queries at a time); "
        "fused = mx.fast.scaled_dot_product_attention with a full mask.")
    seed: int = _f(0, "Seeds adapter init, dropout, data order and splits.")
    log_every: int = _f(10, "Report training loss every N optimizer steps.")
    eval_every: int = _f(50, "Evaluate on the validation split every N steps; 0 = only at the end.")
    eval_batches: int = _f(-1, "Validation batches per evaluation; -1 = all.")
    save_every: int = _f(100, "Write a checkpoint every N steps; 0 = only at the end.")
    keep_checkpoints: int = _f(3, "Keep the newest K checkpoints.")
    early_stopping: EarlyStoppingSpec = _f(EarlyStoppingSpec, "Early stopping on val loss.")
    num_threads: int | None = _f(None, "CPU threads for the torch backend; null = all cores.")
    distributed_timeout: float = _f(
        300.0, "Data parallel (torchrun / mlx.launch): seconds a rank waits for the others at "
        "a gradient all-reduce before it stops with an error (a peer died or hangs).")
    objective: Literal["sft", "dpo", "kto"] = _f(
        "sft", "sft = next-token loss; dpo = preference pairs (chosen/rejected); kto = single "
        "answers with a thumbs up/down label. The reference is the model before this run.")
    beta: float = _f(0.1, "DPO/KTO: strength of the pull towards the reference policy.")
    dpo_loss: Literal["sigmoid", "ipo"] = _f("sigmoid", "DPO loss: sigmoid (the paper) or ipo "
                                             "(on length-averaged log-probabilities).")
    label_smoothing: float = _f(0.0, "DPO (sigmoid): assumed share of flipped preference labels.")
    desirable_weight: float = _f(1.0, "KTO: weight of the losses of thumbs-up answers.")
    undesirable_weight: float = _f(1.0, "KTO: weight of the losses of thumbs-down answers.")


@dataclass(frozen=True)
class SampleSpec:
    prompt: str = _f("", "The user message answered at every evaluation.")
    style: str = _f("", "A style name: its control tag (TERSE -> <STYLE_TERSE>, as `data prepare` "
                    "writes it) goes first in the system prompt.")
    system: str | None = _f(None, "System prompt of this sample; null = data.system_prompt.")


@dataclass(frozen=True)
class EvalSpec:
    labels: list[str] = _f([], "Classifier labels: enables per-class precision/recall/F1 on "
                           "the test split with greedy decoding.")
    max_new_tokens: int = _f(16, "Tokens to generate per test prompt (classifier eval).")
    suites: list[SuiteBase] = _f([], "Evaluation suites: a list of {name, kind, data, ...}; "
                                 "`eden-mlx recipe keys` lists each kind's keys.")
    gates: dict[str, GateSpec] = _f({}, "Ship gates: <suite>.<metric> -> {min, max, max_drop, "
                                    "max_rise}; `eden-mlx eval` exits 4 when one fails.")
    after_train: bool = _f(False, "Run the suites on the best adapter when training ends; the "
                           "verdict goes into the final event and run.json.")
    samples: list[str | SampleSpec] = _f(
        [], "Prompts answered greedily at every evaluation while training (a string, or "
        "{prompt, style, system}): shown in the dashboard, metrics.jsonl, trackers, the report.")
    sample_tokens: int = _f(48, "Tokens generated per eval.samples prompt (greedy).")


@dataclass(frozen=True)
class OutputSpec:
    dir: str = _f("runs/{name}", "Run directory; {name} is the recipe name.")
    report_to: list[Literal["tensorboard", "wandb"]] = _f(
        [], "Experiment trackers fed the dashboard's numbers: tensorboard (event files in "
        "RUN_DIR/tensorboard), wandb (offline unless WANDB_MODE says otherwise; RUN_DIR/wandb). "
        "Needs the tracking extra.")


@dataclass(frozen=True)
class Recipe:
    name: str = _f("run", "Name of the run (used in the output dir).")
    description: str = _f("", "What this recipe is for.")
    model: ModelSpec = _f(ModelSpec, "Base model.")
    adapter: AdapterSpec = _f(AdapterSpec, "Adapter.")
    tokens: TokensSpec = _f(TokensSpec, "New control tokens trained in spare embedding rows.")
    data: DataSpec = _f(DataSpec, "Data.")
    train: TrainSpec = _f(TrainSpec, "Training.")
    eval: EvalSpec = _f(EvalSpec, "Evaluation.")
    output: OutputSpec = _f(OutputSpec, "Output.")

    @property
    def output_dir(self) -> str:
        return self.output.dir.replace("{name}", self.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading


class _Source:
    """Where values came from, for error messages: the file and line of each key path
    (a key inherited through `extends` points into the parent file)."""

    def __init__(self, file: str | None, lines: dict[str, tuple[str | None, int]] | None = None):
        self.file = file
        self.lines = lines or {}

    def error(self, key: str, message: str, hint: str | None = None) -> UserError:
        where = self.lines.get(key)
        parent = key
        while where is None and "." in parent:  # fall back to the closest parent with a line
            parent = parent.rsplit(".", 1)[0]
            where = self.lines.get(parent)
        file, line = where if where else (self.file, None)
        return UserError(message, file=file, line=line, key=key, hint=hint)


def _key_lines(text: str, file: str | None) -> dict[str, tuple[str | None, int]]:
    """Map dotted key paths to (file, 1-based line) using PyYAML's node marks."""
    lines: dict[str, tuple[str | None, int]] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                path = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[path] = (file, k.start_mark.line + 1)
                walk(v, path)
        elif isinstance(node, yaml.SequenceNode):  # list items as key.0, key.1 (sources, suites)
            for i, v in enumerate(node.value):
                lines[f"{prefix}.{i}"] = (file, v.start_mark.line + 1)
                walk(v, f"{prefix}.{i}")

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


def _check_duplicates(node, file: str) -> None:
    """YAML lets a key appear twice and keeps the last; a recipe must not (the first block
    would be dropped without a word)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for k, v in node.value:
            if k.value in seen:
                raise UserError(f"duplicated key (first at line {seen[k.value]})", file=file,
                                line=k.start_mark.line + 1, key=str(k.value),
                                hint="merge the two blocks into one")
            seen[k.value] = k.start_mark.line + 1
            _check_duplicates(v, file)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, file)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_tree(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict]:
    """Read a recipe file into (tree, key lines), resolving `extends: parent.yaml` (relative to
    the file) so later rounds and variants state only what differs from their parent."""
    file = str(path)
    if not path.is_file():
        raise UserError("recipe file not found", file=file,
                        hint="pass the path of a YAML recipe, e.g. recipes/tiny-demo.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte {e.start})", file=file,
                        hint="save the recipe as UTF-8") from None
    try:
        _check_duplicates(yaml.compose(text), file)
        tree = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(f"not valid YAML: {getattr(e, 'problem', e)}", file=file,
                        line=mark.line + 1 if mark else None) from None
    tree = tree if tree is not None else {}
    lines = _key_lines(text, file)
    if not isinstance(tree, dict) or "extends" not in tree:
        return tree, lines
    parent = path.parent / str(tree.pop("extends"))
    if parent.resolve() in chain or parent.resolve() == path.resolve():
        raise UserError("extends forms a cycle", file=file, line=lines["extends"][1],
                        key="extends")
    if not parent.is_file():
        raise UserError(f"extends names a missing file {parent}", file=file,
                        line=lines["extends"][1], key="extends")
    base, base_lines = _read_tree(parent, chain + (path.resolve(),))
    lines.pop("extends", None)
    return _merge(base, tree), {**base_lines, **lines}


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _describe(tp) -> str:
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    elif origin is list:
        text = f"a list of {getattr(typing.get_args(tp)[0], '__name__', 'values')}"
    elif origin is dict:
        text = f"a mapping of names to {getattr(typing.get_args(tp)[1], '__name__', 'values')}"
    else:
        text = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                dict: "a mapping, e.g. {enable_thinking: false}"}.get(
            tp, getattr(tp, "__name__", str(tp)))
    return text + (" or null" if optional else "")


def _coerce(value, tp, key: str, src: _Source, errors: list[UserError]):
    """Check `value` against the field type `tp`; return the (lightly coerced) value."""
    base, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        errors.append(src.error(key, f"must be {_describe(tp)}, got null"))
        return None
    origin = typing.get_origin(base)
    ok = True
    if origin is Literal:
        ok = value in typing.get_args(base)
        if not ok:
            close = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(base)], 1)
            hint = f"did you mean {close[0]!r}?" if close else None
            errors.append(src.error(key, f"must be {_describe(tp)}, got {value!r}", hint))
            return value
    elif origin is list and typing.get_args(base)[0] is SuiteBase:
        ok = isinstance(value, list)
        value = [_build_suite(v, f"{key}.{i}", src, errors) for i, v in
                 enumerate(value)] if ok else value
    elif origin is list:
        item = typing.get_args(base)[0]
        if isinstance(value, (str, int, float, dict)) and not isinstance(value, bool):
            value = [value]  # a single file or number where a list is expected
        if not isinstance(value, list):
            ok = False
        elif dataclasses.is_dataclass(item):  # a list of sections (prepare sources)
            value = [_build(item, v, f"{key}.{i}", src, errors) for i, v in enumerate(value)]
        elif _section_of(item):  # str or section (data.train: a path or {path, weight})
            value = [_build(_section_of(item), v, f"{key}.{i}", src, errors)
                     if isinstance(v, dict) else _coerce(v, str, f"{key}.{i}", src, errors)
                     for i, v in enumerate(value)]
        else:
            value = [_coerce(v, item, key, src, errors) for v in value]
    elif origin is dict:  # a free mapping (template options), name -> value tables (prepare's
        # field mappings, prompts per role) or a typed one (eval.gates)
        args = typing.get_args(base)
        ok = isinstance(value, dict)
        if ok and len(args) == 2 and dataclasses.is_dataclass(args[1]):
            value = {str(k): _build(args[1], v if v is not None else {}, f"{key}.{k}", src,
                                    errors) for k, v in value.items()}
        elif ok and len(args) == 2:
            value = {str(k): _coerce(v, args[1], f"{key}.{k}", src, errors)
                     for k, v in value.items()}
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value, ok = float(value), True
            except ValueError:
                ok = False
        value = float(value) if ok else value
        if ok and not math.isfinite(value):  # .nan/.inf pass every comparison test wrongly
            errors.append(src.error(key, f"must be a finite number, got {value!r}"))
            return value
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif base is str:
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        value = str(value) if ok else value
    if not ok:
        errors.append(src.error(key, f"must be {_describe(tp)}, got {value!r}"))
    return value


def _section_of(tp):
    """The dataclass in a `str | Section` union (data.train entries), else None."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)


def _build(cls, data: dict, prefix: str, src: _Source, errors: list[UserError]):
    """Build dataclass `cls` from `data`, collecting unknown keys and type errors."""
    if not isinstance(data, dict):
        errors.append(src.error(prefix or "(top level)", "must be a mapping of keys to values"))
        data = {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else \
                f"valid keys: {', '.join(names)}"
            errors.append(src.error(path, "unknown key", hint))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, path, src, errors)
            continue
        before = len(errors)
        coerced = _coerce(value, tp, path, src, errors)
        if len(errors) == before or _typed_items(tp, coerced):
            # A bad value keeps the default, so the cross-field checks below never compare a
            # string or null with a number; a list or table of sections (prepare sources, eval
            # suites and gates) is kept, its items already hold defaults for their bad keys.
            kwargs[key] = coerced
    return cls(**kwargs)


def _typed_items(tp, value) -> bool:
    """eval.suites / eval.gates: their entries were built key by key (a bad key keeps its
    default), so they are kept, and a gate on a suite with a typo is not also 'unknown'."""
    base = _strip_optional(tp)[0]
    args, origin = typing.get_args(base), typing.get_origin(base)
    return bool(args) and dataclasses.is_dataclass(args[-1]) and isinstance(value, origin)


def _build_suite(data, key: str, src: _Source, errors: list[UserError]) -> SuiteBase:
    """One entry of eval.suites: its `kind` picks the dataclass, so each kind's keys are
    checked strictly (an unknown kind or a key of another kind is an error)."""
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = SUITE_KINDS.get(kind)
    if cls is None:
        close = difflib.get_close_matches(str(kind), list(SUITE_KINDS), 1)
        errors.append(src.error(f"{key}.kind", f"unknown suite kind {kind!r}",
                                f"did you mean {close[0]!r}?" if close else
                                f"use one of {', '.join(SUITE_KINDS)}"))
        return SuiteBase(**({k: v for k, v in data.items() if k in ("name", "kind")}
                            if isinstance(data, dict) else {}))
    return _build(cls, data, key, src, errors)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        if isinstance(node, list) and p.isdigit() and int(p) < len(node):  # sources.0.path
            node = node[int(p)]
            continue
        if not isinstance(node.get(p), (dict, list)):
            node[p] = {}
        node = node[p]
    if isinstance(node, list) and parts[-1].isdigit() and int(parts[-1]) < len(node):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """Parse `--set a.b=value` strings; values are read as YAML scalars (1e-4, true, [a, b])."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. train.learning_rate=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def load_recipe(path: str | Path | None, overrides=()) -> Recipe:
    """Read a recipe file (or the defaults when path is None), apply `--set` overrides, validate.

    Relative data and model paths are kept as written; they resolve against the current
    directory, like every other CLI path.
    """
    return load_typed(Recipe, path, overrides, _validate)


def load_typed(root: type, path: str | Path | None, overrides=(), validate=None, prepare=None):
    """Read any recipe-like YAML file strictly into the dataclass tree `root`: `extends`,
    `--set` overrides, file:line errors with did-you-mean, and `validate(obj, src)` collecting
    cross-field problems. `prepare(tree)` may reshape the raw tree first (prepare recipes merge
    the global filters into each source's)."""
    tree, lines, file = {}, {}, None
    if path is not None:
        file = str(path)
        tree, lines = _read_tree(Path(path))
    src = _Source(file, lines)
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
        for k in [k for k in src.lines if k == key or k.startswith(key + ".")]:
            del src.lines[k]  # the value is no longer the file's: name the flag, not a line
        src.lines[key] = ("--set", 0)
    if prepare is not None and isinstance(tree, dict):
        tree = prepare(tree)
    errors: list[UserError] = []
    obj = _build(root, tree, "", src, errors)
    if validate is not None:
        errors.extend(validate(obj, src))
    if errors:
        raise errors[0] if len(errors) == 1 else UserErrors(errors)
    return obj


def _validate(r: Recipe, src: _Source) -> list[UserError]:
    """Cross-field checks, all collected."""
    e: list[UserError] = []

    def check(cond: bool, key: str, msg: str, hint: str | None = None):
        if not cond:
            e.append(src.error(key, msg, hint))

    a, d, t = r.adapter, r.data, r.train
    if not isinstance(a.rank, int) or not isinstance(t.batch_size, int):
        return e  # type errors already reported; the arithmetic below would only repeat them
    check(a.rank > 0, "adapter.rank", "must be positive")
    check(0 <= a.dropout < 1, "adapter.dropout", "must be in [0, 1)")
    check(a.layers == -1 or a.layers > 0, "adapter.layers", "must be -1 (all) or positive")
    bad = [x for x in a.targets if x not in PROJECTIONS and x not in TARGET_PRESETS]
    check(not bad, "adapter.targets", f"unknown target {', '.join(map(repr, bad))}",
          f"use names from {', '.join(PROJECTIONS)} or a preset all/attention/mlp")
    check(bool(a.targets), "adapter.targets", "must name at least one projection")
    q = r.model.quantize
    check(a.loftq_iters >= 1, "adapter.loftq_iters", "must be at least 1")
    if a.init == "loftq":
        check(bool(q.bits), "adapter.init", "loftq needs a base quantized at load time",
              "set model.quantize.bits (e.g. 4) and point model.path at a float checkpoint")
        check(a.type == "lora", "adapter.init", "loftq initializes LoRA adapters only",
              "use adapter.type: lora")
    check(q.bits is None or q.bits in QUANT_BITS, "model.quantize.bits",
          f"must be {', '.join(map(str, QUANT_BITS))} or null")
    check(q.group_size in QUANT_GROUPS, "model.quantize.group_size",
          f"must be {', '.join(map(str, QUANT_GROUPS))}")
    check(d.max_seq_length >= 8, "data.max_seq_length", "must be at least 8")
    for i, sample in enumerate(r.eval.samples):
        text = sample if isinstance(sample, str) else sample.prompt
        check(bool(str(text).strip()), f"eval.samples.{i}", "has an empty prompt")
    check(r.eval.sample_tokens > 0, "eval.sample_tokens", "must be positive")
    _check_train_sources(d, check)
    if d.split:
        check(len(d.split) == 3 and all(x >= 0 for x in d.split) and abs(sum(d.split) - 1) < 1e-6,
              "data.split", "must be three fractions [train, valid, test] that sum to 1")
        check(not d.valid, "data.split", "give either data.valid or data.split, not both")
    check(t.batch_size > 0, "train.batch_size", "must be positive")
    check(t.grad_accumulation > 0, "train.grad_accumulation", "must be positive")
    check(t.max_steps is None or t.max_steps > 0, "train.max_steps", "must be positive or null")
    check(t.epochs > 0, "train.epochs", "must be positive")
    check(t.learning_rate > 0, "train.learning_rate", "must be positive")
    check(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    check(0 <= t.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)")
    check(not (t.warmup_steps and t.warmup_ratio), "train.warmup_ratio",
          "set warmup_steps or warmup_ratio, not both")
    check(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]")
    check(t.max_grad_norm is None or t.max_grad_norm > 0, "train.max_grad_norm",
          "must be positive or null")
    check(t.seed >= 0, "train.seed", "must be >= 0")
    check(t.eval_batches == -1 or t.eval_batches > 0, "train.eval_batches",
          "must be -1 (all) or positive")
    check(t.early_stopping.min_delta >= 0, "train.early_stopping.min_delta", "must be >= 0")
    check(r.eval.max_new_tokens >= 1, "eval.max_new_tokens", "must be at least 1")
    check(t.num_threads is None or t.num_threads >= 1, "train.num_threads",
          "must be at least 1 or null")
    check(a.alpha > 0, "adapter.alpha", "must be positive")
    check(t.log_every > 0, "train.log_every", "must be positive")
    check(t.distributed_timeout > 0, "train.distributed_timeout", "must be positive")
    check(t.eval_every >= 0, "train.eval_every", "must be >= 0")
    check(t.save_every >= 0, "train.save_every", "must be >= 0")
    check(t.keep_checkpoints >= 1, "train.keep_checkpoints", "must be at least 1")
    check(t.loss_chunk >= 0, "train.loss_chunk", "must be >= 0 (0 = off)")
    check(t.beta > 0, "train.beta", "must be positive")
    check(0 <= t.label_smoothing < 0.5, "train.label_smoothing", "must be in [0, 0.5)")
    check(t.desirable_weight > 0 and t.undesirable_weight > 0, "train.desirable_weight",
          "KTO weights must be positive")
    es = t.early_stopping
    check(es.patience is None or es.patience >= 1, "train.early_stopping.patience",
          "must be at least 1 or null")
    _check_tokens(r, check)
    e.extend(validate_eval(r.eval, src))
    return e


def _check_tokens(r: Recipe, check) -> None:
    """tokens.add: distinct non-empty strings; data.style_tokens maps to tokens it adds."""
    add = r.tokens.add
    check(all(isinstance(t, str) and t.strip() for t in add) and len(set(add)) == len(add),
          "tokens.add", "must be distinct non-empty strings", 'e.g. ["<STYLE_TERSE>"]')
    check(bool(str(r.tokens.init).strip()), "tokens.init", "must be mean or a non-empty text")
    missing = [t for t in r.data.style_tokens.values() if t not in add]
    check(not missing, "data.style_tokens", f"{', '.join(map(repr, missing))} not in tokens.add",
          "add the token to tokens.add")


# --------------------------------------------------------------------------- writing


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what `recipe show` prints and run.json stores)."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=None)


def recipe_from_dict(tree: dict, *, file: str | None = None) -> Recipe:
    """Rebuild a recipe from its dict form (e.g. run.json) with the same strict checks."""
    src = _Source(file)
    errors: list[UserError] = []
    recipe = _build(Recipe, tree, "", src, errors)
    errors.extend(_validate(recipe, src))
    if errors:
        raise UserErrors(errors)
    return recipe


def _check_train_sources(d: DataSpec, check) -> None:
    """Weighted data.train entries: a path each, a positive weight, no file twice (the
    realized count per source is keyed by file)."""
    if not any(isinstance(e, TrainSource) for e in d.train):
        return
    seen: set[str] = set()
    for i, e in enumerate(d.train):
        path = e.path if isinstance(e, TrainSource) else e
        check(path not in seen, f"data.train.{i}", f"{path} is listed twice",
              "list each file once; its weight sets how much of it each epoch draws")
        seen.add(path)
        if isinstance(e, TrainSource):
            check(bool(e.path), f"data.train.{i}.path", "must name a JSONL file or folder")
            check(e.weight > 0, f"data.train.{i}.weight", f"must be positive, got {e.weight}")
    check(not d.balance, "data.balance", "cannot be combined with weighted data.train "
          "entries (the weights already set each source's share)")


def field_help(root: type = Recipe) -> list[tuple[str, str, Any, str]]:
    """(dotted key, help, default, allowed values) for every leaf option of `root` (a training
    recipe by default), for docs, `recipe keys` and `data keys`; allowed values read from the
    field's type ("one of 'lora', 'dora'"). Items of a list of sections are `key.N.x`."""
    out = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            path = f"{prefix}{f.name}"
            tp = typing.get_type_hints(cls)[f.name]
            item = (typing.get_args(tp) or (None,))[0]
            item = _section_of(item) or item
            if dataclasses.is_dataclass(tp):
                walk(tp, path + ".")
            elif typing.get_origin(tp) is list and dataclasses.is_dataclass(item):
                out.append((path, f.metadata.get("help", ""), [], "a list of sections"))
                walk(item, path + ".N.")
            else:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                out.append((path, f.metadata.get("help", ""), default, _describe(tp)))

    walk(root, "")
    if root is Recipe:  # each suite kind's keys, e.g. eval.suites[generate].checks.regex
        for kind, cls in SUITE_KINDS.items():
            walk(cls, f"eval.suites[{kind}].")
    return out
