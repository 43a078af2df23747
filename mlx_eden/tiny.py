"""Build tiny Qwen2/Qwen3 models locally: the embedded default for tests and the demo.

Nothing is downloaded: the weights are drawn from a seeded numpy generator and the tokenizer is a
byte-level BPE trained with `tokenizers` on text shipped in the package, or a copy of a real one
(`--tokenizer DIR`, e.g. Qwen3's) with the embedding sized like the real model's. The folder has the
Hugging Face layout (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with a
ChatML chat template), so mlx-lm, transformers and our GGUF exporter read it like a real Qwen.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .qwen import SPECIAL_TOKENS, SPLIT_PATTERN
from .safeio import MARKER, publish_dir

# The Qwen2-Instruct ChatML template (no tool calling), with its default system message.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = Path(__file__).parent / "assets" / "tokenizer_corpus.txt"

# Qwen2, Qwen2.5 and Qwen3 all have 151,936 embedding rows for 151,643 BPE tokens + 22..26 added
# ones: the spare rows are never produced by the tokenizer.
QWEN_VOCAB = 151936
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja")


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. Defaults: fast tests, and K-quant-friendly sizes (multiples of 256)."""

    arch: str = "qwen2"
    hidden: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 512
    vocab: int = 512
    tied: bool = True
    seed: int = 0
    spare: int = 0  # embedding rows after the trained tokenizer's ids (Qwen has 271+), for tokens.add
    tokenizer: str | None = None  # copy this tokenizer folder instead of training a BPE

    def check(self) -> None:
        problems = []
        if self.arch not in ("qwen2", "qwen3"):
            problems.append(f"--arch must be qwen2 or qwen3, got {self.arch!r}")
        if self.hidden % self.heads:
            problems.append(f"--hidden {self.hidden} must be divisible by --heads {self.heads}")
        if self.heads % self.kv_heads:
            problems.append(f"--heads {self.heads} must be divisible by --kv-heads {self.kv_heads}")
        if self.tokenizer:
            n = tokenizer_size(self.tokenizer)
            if self.vocab < n:
                problems.append(f"--vocab {self.vocab} is smaller than the tokenizer's {n} ids; "
                                f"leave --vocab out for {padded_vocab(n)} rows")
        elif self.vocab < 384 or self.vocab % 64:
            problems.append(f"--vocab {self.vocab} must be a multiple of 64, at least 384 "
                            "(256 byte tokens + merges + 3 special tokens)")
        elif self.spare < 0 or self.vocab - self.spare < 384:
            problems.append(f"--spare {self.spare} must be >= 0 and leave the tokenizer at "
                            f"least 384 of the {self.vocab} rows")
        if self.tokenizer and self.spare:
            problems.append("--spare is for the trained tokenizer; with --tokenizer the spare "
                            "rows are --vocab minus its ids")
        if problems:
            raise UserError("; ".join(problems))


def tokenizer_size(folder: str | Path) -> int:
    """Ids a tokenizer folder can produce (BPE vocabulary plus added tokens)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise UserError("no tokenizer.json there", file=str(folder),
                        hint="give a Hugging Face tokenizer folder (tokenizer.json, "
                        "tokenizer_config.json)")
    return Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)


def padded_vocab(n: int) -> int:
    """Embedding rows for a tokenizer of n ids: Qwen's 151,936 when it fits, else n rounded up
    to a multiple of 256."""
    return QWEN_VOCAB if n <= QWEN_VOCAB else -(-n // 256) * 256


def train_tokenizer(vocab: int, corpus: Path = CORPUS):
    """A byte-level BPE with Qwen's pre-tokenizer and ChatML special tokens.

    Returns a `tokenizers.Tokenizer` with exactly `vocab` ids: the learned vocabulary padded by
    the trainer to vocab - 3, then the three special tokens (as in Qwen, specials come last).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    text = corpus.read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(text, trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    from tokenizers import processors
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # When the corpus cannot supply vocab - 3 merges the tokenizer is smaller than `vocab` and the
    # remaining embedding rows are spare (Qwen pads its vocabulary the same way); the CLI says so.
    return tok


def _config(spec: TinySpec, tok) -> dict:
    head_dim = spec.hidden // spec.heads
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    cfg = {
        "architectures": ["Qwen2ForCausalLM" if spec.arch == "qwen2" else "Qwen3ForCausalLM"],
        "model_type": spec.arch,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": spec.tied,
        "vocab_size": spec.vocab,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": spec.layers,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    if spec.arch == "qwen3":
        cfg["attention_bias"] = False
    return cfg


def _weights(spec: TinySpec) -> dict[str, np.ndarray]:
    """Seeded random weights in Hugging Face names (float32)."""
    rng = np.random.default_rng(spec.seed)
    head_dim = spec.hidden // spec.heads
    q_dim, kv_dim = spec.heads * head_dim, spec.kv_heads * head_dim

    def normal(*shape, std=0.02):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(n):  # RMSNorm gains near 1 so activations keep a sane scale
        return (1.0 + rng.standard_normal(n) * 0.02).astype(np.float32)

    w = {"model.embed_tokens.weight": normal(spec.vocab, spec.hidden)}
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(spec.hidden)
        w[p + "post_attention_layernorm.weight"] = norm(spec.hidden)
        w[p + "self_attn.q_proj.weight"] = normal(q_dim, spec.hidden)
        w[p + "self_attn.k_proj.weight"] = normal(kv_dim, spec.hidden)
        w[p + "self_attn.v_proj.weight"] = normal(kv_dim, spec.hidden)
        w[p + "self_attn.o_proj.weight"] = normal(spec.hidden, q_dim)
        if spec.arch == "qwen2":  # Qwen2 has q/k/v biases; Qwen3 has q/k norms instead
            w[p + "self_attn.q_proj.bias"] = normal(q_dim)
            w[p + "self_attn.k_proj.bias"] = normal(kv_dim)
            w[p + "self_attn.v_proj.bias"] = normal(kv_dim)
        else:
            w[p + "self_attn.q_norm.weight"] = norm(head_dim)
            w[p + "self_attn.k_norm.weight"] = norm(head_dim)
        w[p + "mlp.gate_proj.weight"] = normal(spec.intermediate, spec.hidden)
        w[p + "mlp.up_proj.weight"] = normal(spec.intermediate, spec.hidden)
        w[p + "mlp.down_proj.weight"] = normal(spec.hidden, spec.intermediate)
    w["model.norm.weight"] = norm(spec.hidden)
    if not spec.tied:
        w["lm_head.weight"] = normal(spec.vocab, spec.hidden)
    return w


def _tokenizer_config(tok) -> dict:
    added = {
        str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "special": True}
        for t in SPECIAL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 4096,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _normal_mode(path: Path) -> None:
    """mkdtemp makes 0700 folders; give the model folder the permissions mkdir would (umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def _write_tokenizer(tmp: Path, spec: TinySpec):
    """Copy spec.tokenizer's files, or train and write our own BPE; return the `Tokenizer`."""
    from tokenizers import Tokenizer

    if spec.tokenizer:
        for name in TOKENIZER_FILES:
            if (Path(spec.tokenizer) / name).is_file():
                shutil.copyfile(Path(spec.tokenizer) / name, tmp / name)
        return Tokenizer.from_file(str(tmp / "tokenizer.json"))
    tok = train_tokenizer(spec.vocab - spec.spare)
    tok.save(str(tmp / "tokenizer.json"))
    vocab = {k: v for k, v in tok.get_vocab(with_added_tokens=False).items()}
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges = json.loads(tok.to_str())["model"]["merges"]
    (tmp / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(m if isinstance(m, str) else " ".join(m) for m in merges)
        + "\n", encoding="utf-8")
    (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(tok), indent=2))
    (tmp / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, indent=2))
    return tok


def write_tiny(out_dir: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a tiny model folder at `out_dir` (atomically: built in a temp dir, then renamed)."""
    from safetensors.numpy import save_file

    spec.check()
    out = Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out.parent if out.parent.exists() else None))
    try:
        _normal_mode(tmp)
        tok = _write_tokenizer(tmp, spec)
        cfg = _config(spec, tok)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps({
            "bos_token_id": cfg["bos_token_id"],
            "eos_token_id": [cfg["eos_token_id"], cfg["bos_token_id"]],
            "pad_token_id": cfg["bos_token_id"], "do_sample": False}, indent=2))
        save_file(_weights(spec), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / MARKER).write_text("tiny\n")  # `eden-mlx tiny` may replace its own folder
        out.parent.mkdir(parents=True, exist_ok=True)
        publish_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_quantized(out_dir: str | Path, spec: TinySpec, bits: int, group_size: int) -> Path:
    """A tiny model, quantized by mlx-lm's converter: the float folder is built in a temp dir
    and converted. Needs mlx (imported only here, so tiny.py stays framework-free)."""
    from .backends.mlx.convert import quantize_folder

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = write_tiny(Path(tmp) / "float", spec)
        return quantize_folder(src, out, bits, group_size)
