"""`--verify`: load each artifact in its real consumer and compare it with MLX on the probe
prompts. The thresholds are scale-free (mean |Δ| / std of the reference logits) so they hold for
a tiny test model and a 32B alike; every figure is reported, pass or fail."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..adapters import read_adapter_config
from ..errors import UserError
from ..units import gib
from .files import float32_bytes, quantized_bytes, read_config, read_tensors_lazily
from .probe import Delta, added_token_prompts, compare, hf_ids, nfd_note, probe_texts
from .readback import dequantized_weights

GREEDY_TOKENS = 32  # greedy tokens generated per probe on each side ("what a user sees")

# quant → (largest mean|Δ|/std, smallest argmax agreement, reference): the file-reading check,
# against the file's own weights in float32, so it measures the exporter and llama.cpp only.
CRITERIA = {
    "f32": (1e-3, 0.99, "MLX, float32 source weights"),
    "f16": (2e-2, 0.95, "MLX, float32 source weights"),
    "bf16": (5e-2, 0.90, "MLX, float32 source weights"),
    "q8_0": (5e-2, 0.85, "MLX on the GGUF's own de-quantized weights"),
    "q4_k_m": (5e-2, 0.85, "MLX on the GGUF's own de-quantized weights"),
    "q5_k_m": (5e-2, 0.85, "MLX on the GGUF's own de-quantized weights"),
    "q6_k": (5e-2, 0.85, "MLX on the GGUF's own de-quantized weights"),
    "lora": (1e-3, 0.99, "MLX, base + adapter unfused"),
}
# The quantization gap: the deployed file against the model as trained (or as fused), two
# roundings apart (MLX 4-bit in training, llama.cpp's quant in the file): (largest mean|Δ|/std,
# smallest decided argmax agreement). Measured on the tiny models at q4_k_m: 0.08 / 98.7% against
# a QLoRA run; 0.12 / 85.9% for a random adapter fused into a float base. A misread file lands
# near 1.0 / 1%. The greedy share is reported, not judged: it measures how peaked the model is
# as much as the file (that random tiny model kept 40% of probes identical, the trained one 100%).
GAP = (0.25, 0.80)
# Per-tensor relative RMS error of the GGUF's de-quantized weights against the fused folder,
# by quant: a misnamed or transposed tensor lands near 1.4; rounding stays well under these.
TENSOR_BOUND = {"f32": 1e-6, "f16": 1e-3, "bf16": 1e-2, "q8_0": 0.02, "q6_k": 0.06,
                "q5_k_m": 0.1, "q4_k_m": 0.15}  # q4_k_m measured 0.071 on the tiny model
REFERENCES = {"trained": "the model as trained (base as stored, 4-bit included, + adapter; MLX)",
              "fused": "the fused folder as written (MLX, float32)",
              "float": "the file's own weights in float32 (MLX)"}


@dataclass
class Verdict:
    """One artifact checked in its consumer."""

    artifact: str
    consumer: str
    reference: str
    delta: Delta | None = None
    float_gap: Delta | None = None  # quantized files: llama.cpp against the float model
    tokenizer_mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    passed: bool = False
    greedy_same: float | None = None  # share of probes whose greedy tokens are identical

    def lines(self) -> list[str]:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.artifact} in {self.consumer} " \
               f"vs {self.reference}"
        out = [head]
        if self.delta is not None:
            out.append(f"  logits: {self.delta}")
        if self.float_gap is not None:
            out.append(f"  vs the float model (quantization error): {self.float_gap}")
        if self.greedy_same is not None:
            out.append(f"  greedy: first {GREEDY_TOKENS} tokens identical on "
                       f"{self.greedy_same:.0%} of probes")
        out += [f"  tokenizer differs: {m}" for m in self.tokenizer_mismatches]
        out += [f"  {n}" for n in self.notes]
        return out


def _machine_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_phases(phases: dict[str, int], total: int | None = None) -> str:
    """The memory of each phase, run one after the other (only probe logits are kept between
    them): refuse up front only when the largest does not fit. Returns the line to print."""
    total = total or _machine_bytes()
    line = "memory, one phase at a time: " + ", then ".join(
        f"{name} {gib(n)}" for name, n in phases.items()) + f"; this machine {gib(total)}"
    name, need = max(phases.items(), key=lambda kv: kv[1])
    if need > 0.8 * total:
        raise UserError(f"--verify: the {name} phase needs about {gib(need)}; this machine has "
                        f"{gib(total)}", hint="the file is written; choose --reference trained "
                        "(the 4-bit base + adapter) or verify on a larger machine")
    return line


def check_memory(model_dir: Path, artifact_bytes: int) -> None:
    """Refuse up front when the float32 reference (weights held twice) or the artifact in its
    consumer cannot fit in this machine's memory."""
    check_phases({"llama.cpp": artifact_bytes, "MLX float32": float32_bytes(model_dir) * 2})


def llama_phase_bytes(files: list[Path], config: dict, n_ctx: int) -> int:
    """llama.cpp's resident size: the mapped files, the float32 KV cache and all-position
    logits of one prompt."""
    kv_dim = config.get("num_key_value_heads", config["num_attention_heads"]) * \
        config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
    kv = 2 * config["num_hidden_layers"] * n_ctx * kv_dim * 4
    return sum(f.stat().st_size for f in files) + kv + n_ctx * config["vocab_size"] * 4


def trained_bits(model_dir: Path, adapter_dir: Path | None) -> tuple[int, int] | None:
    """(bits, group) when the adapter's run quantized this float base at load time (QLoRA on
    a float folder, as the 32B journey does), else None."""
    if adapter_dir is None or "quantization" in read_config(model_dir):
        return None
    q = read_adapter_config(adapter_dir).get("eden", {}).get("quantize") or {}
    return (q["bits"], q["group_size"]) if q.get("bits") else None


def mlx_phase_bytes(model_dir: Path, adapter_dir: Path | None = None) -> int:
    """MLX's resident size for a reference: the weights as it holds them (float tensors
    widened to float32, packed 4-bit kept or, for a base the run quantized at load time, made)
    plus the adapter."""
    extra = 0
    if adapter_dir is not None:
        extra = sum(f.stat().st_size for f in Path(adapter_dir).glob("*.safetensors"))
    bits = trained_bits(model_dir, adapter_dir)
    return (quantized_bytes(model_dir, *bits) if bits else float32_bytes(model_dir)) + extra


def judge(delta: Delta, kind: str) -> bool:
    """Thresholds of CRITERIA; the top token counts only where the reference is not tied."""
    rel, agree, _ = CRITERIA[kind]
    return delta.rel <= rel and delta.decided_agree >= agree and delta.last_decided_equal


def judge_gap(delta: Delta) -> bool:
    rel, agree = GAP
    return delta.rel <= rel and delta.decided_agree >= agree


def greedy_share(a: list[list[int]], b: list[list[int]]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)


def tokenizer_mismatches(llm, model_dir: Path) -> list[str]:
    """Probe texts on which llama.cpp's ids differ from the Hugging Face tokenizer's."""
    texts = probe_texts(model_dir)
    out = []
    for text, ids in zip(texts, hf_ids(model_dir, texts), strict=True):
        if llm.tokenize(text) != ids:
            out.append(repr(text[:40]))
    return out


@dataclass
class Consumer:
    """What is kept of the llama.cpp phase: probe logits, greedy tokens, tokenizer check."""

    logits: list
    greedy: list
    mismatches: list[str]
    nfd: str | None = None  # how llama.cpp treats NFD text (probe.nfd_note)


def run_llama(model: Path, prompts, tokenizer_dir: Path | None, lora: Path | None = None,
              n_ctx: int = 256) -> Consumer:
    from .llamacpp import LlamaCpp

    llm = LlamaCpp(model, lora=lora, n_ctx=n_ctx)
    try:
        bad = tokenizer_mismatches(llm, tokenizer_dir) if tokenizer_dir else []
        nfd = nfd_note(llm.tokenize, tokenizer_dir) if tokenizer_dir else None
        return Consumer(llm.all_logits(prompts), [llm.greedy(p, GREEDY_TOKENS) for p in prompts],
                        bad, nfd)
    finally:
        llm.close()


def tensor_check(gguf_path: Path, model_dir: Path, quant: str) -> tuple[bool, str]:
    """Every GGUF tensor, de-quantized one at a time, against the fused folder's: the
    file-reading check that fits any machine (names, shapes, transposes, rounding)."""
    from .readback import dequantized_tensors

    bound, worst, name = TENSOR_BOUND[quant], 0.0, ""
    source = dict(read_tensors_lazily(model_dir))
    for hf, got in dequantized_tensors(gguf_path, model_dir):
        want = np.asarray(source[hf](), dtype=np.float32)
        err = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
        if err > worst:
            worst, name = err, hf
    ok = worst <= bound
    return ok, (f"every tensor de-quantized vs its source folder: largest relative error "
                f"{worst:.3g} ({name}; bound {bound:g} for {quant})")


def verify_gguf(gguf_path: Path, model_dir: Path, quant: str, reference: str = "float",
                trained: tuple[Path, Path] | None = None,
                max_tokens: int = 96) -> list[Verdict]:
    """The GGUF in llama.cpp, then the reference in MLX, never both loaded. `reference`:
    float (the file's own weights: the exporter alone), fused (the fused folder), trained
    (`trained` = (base as trained, adapter): the quantization gap the user ships)."""
    from ..backends.mlx import inference

    config = read_config(model_dir)
    n_ctx = max(256, max_tokens + GREEDY_TOKENS)
    ref_dir, adapter = trained if reference == "trained" else (model_dir, None)
    ref_bytes = float32_bytes(model_dir) * 2 if reference == "float" else \
        mlx_phase_bytes(ref_dir, adapter)
    print(check_phases({"llama.cpp": llama_phase_bytes([gguf_path], config, n_ctx),
                        f"MLX ({reference})": ref_bytes}))
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]
    got = run_llama(gguf_path, prompts, model_dir, n_ctx=n_ctx)
    reading = Verdict(str(gguf_path), "llama.cpp (f32 KV cache)", "its source (file reading)")
    reading.tokenizer_mismatches = got.mismatches
    reading.notes.append(got.nfd)
    if reference == "float":
        reading.reference = CRITERIA[quant][2]
        if quant in ("f32", "f16", "bf16"):
            want, greedy = inference.folder_outputs(model_dir, prompts, n=GREEDY_TOKENS)
        else:
            want, greedy = inference.weights_outputs(
                model_dir, dequantized_weights(gguf_path, model_dir), prompts, GREEDY_TOKENS)
            # Against its own de-quantized weights the check proves the file is read as
            # written; a bad quantizer would pass that, so the gap to the float model is
            # reported too (one more MLX phase, after the first one is freed).
            reading.float_gap = compare(got.logits, inference.folder_logits(model_dir, prompts))
        reading.delta = compare(got.logits, want)
        reading.greedy_same = greedy_share(got.greedy, greedy)
        reading.passed = judge(reading.delta, quant) and not got.mismatches
        return [reading]
    ok, note = tensor_check(gguf_path, model_dir, quant)
    reading.notes.append(note)
    reading.notes.append("tokenizer ids identical on every probe" if not got.mismatches else
                         "tokenizer ids differ")
    reading.passed = ok and not got.mismatches
    gap = Verdict(str(gguf_path), "llama.cpp", REFERENCES[reference] +
                  " (quantization gap)")
    want, greedy = inference.folder_outputs(ref_dir, prompts, adapter, GREEDY_TOKENS,
                                            as_trained=True)
    gap.delta = compare(got.logits, want)
    gap.greedy_same = greedy_share(got.greedy, greedy)
    gap.passed = judge_gap(gap.delta)
    return [reading, gap]


def verify_gguf_lora(lora_path: Path, base_gguf: Path, model_dir: Path, adapter_dir: Path,
                     max_tokens: int = 96) -> Verdict:
    """llama.cpp with the LoRA GGUF on the base GGUF vs MLX base + adapter (the model as
    trained: `model_dir` may be 4-bit); and proof it applied (llama.cpp would otherwise quietly
    run the bare base). On a float base GGUF and float base folder it is an exactness check;
    otherwise the difference is a quantization gap, judged as such."""
    from ..backends.mlx import inference
    from .quantize import tensor_types

    config = read_config(model_dir)
    n_ctx = max(256, max_tokens + GREEDY_TOKENS)
    exact = "quantization" not in config and not trained_bits(model_dir, adapter_dir) and \
        set(tensor_types(base_gguf).values()) <= {"f32"}
    print(check_phases({"llama.cpp": llama_phase_bytes([base_gguf, lora_path], config, n_ctx),
                        "MLX (trained)": mlx_phase_bytes(model_dir, adapter_dir)}))
    v = Verdict(str(lora_path), "llama.cpp (LoRA on the base GGUF)", CRITERIA["lora"][2] if exact
                else REFERENCES["trained"] + " (quantization gap)")
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]
    got = run_llama(base_gguf, prompts, None, lora=lora_path, n_ctx=n_ctx)
    bare = run_llama(base_gguf, prompts, None, n_ctx=n_ctx)
    want, greedy = inference.folder_outputs(model_dir, prompts, adapter_dir, GREEDY_TOKENS,
                                            as_trained=True)
    v.delta = compare(got.logits, want)
    v.greedy_same = greedy_share(got.greedy, greedy)
    without = compare(bare.logits, want)
    v.notes.append(f"without the adapter llama.cpp is at mean|Δ|/std {without.rel:.2e} from "
                   f"the reference, with it {v.delta.rel:.2e}")
    applied = v.delta.rel < 0.5 * without.rel
    if not applied:
        v.notes.append("the adapter did not bring llama.cpp closer to the reference: it was not "
                       "applied")
    v.passed = (judge(v.delta, "lora") if exact else judge_gap(v.delta)) \
        and applied
    return v


def verify_peft(peft_dir: Path, model_dir: Path, adapter_dir: Path,
                max_tokens: int = 96) -> Verdict:
    """The PEFT folder in peft.PeftModel (torch, float32) vs MLX base + adapter."""
    from ..backends.mlx import inference
    from ..backends.torch.peft_logits import peft_logits

    check_memory(model_dir, 0)
    v = Verdict(str(peft_dir), "peft.PeftModel (torch, float32)", CRITERIA["lora"][2])
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]
    prompts += added_token_prompts(model_dir, adapter_dir)
    v.delta = compare(peft_logits(model_dir, peft_dir, prompts),
                      inference.folder_logits(model_dir, prompts, adapter_dir))
    v.passed = judge(v.delta, "lora")
    return v


def verify_ollama(modelfile: Path, gguf_path: Path) -> Verdict:
    """With Ollama installed: `ollama create` must accept the Modelfile. Without it: the GGUF it
    names must load in llama.cpp and every stop string must be one special token there."""
    import shutil
    import subprocess

    from .llamacpp import LlamaCpp
    from .ollama import gguf_chat_facts

    if shutil.which("ollama"):
        v = Verdict(str(modelfile), "ollama create", "the Modelfile's GGUF")
        name = f"eden-verify-{abs(hash(str(modelfile.resolve()))) % 10**8}"
        proc = subprocess.run(["ollama", "create", name, "-f", str(modelfile)],
                              capture_output=True, text=True)
        subprocess.run(["ollama", "rm", name], capture_output=True)
        v.passed = proc.returncode == 0
        v.notes.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "created")
        return v
    v = Verdict(str(modelfile), "llama.cpp (Ollama is not installed)", "its own vocabulary")
    _, stops = gguf_chat_facts(gguf_path)
    llm = LlamaCpp(gguf_path)
    split = [s for s in stops if len(llm.tokenize(s)) != 1]
    llm.close()
    v.notes.append(f"stop tokens {stops}: " + (f"not single tokens: {split}" if split
                                                else "each one special token"))
    v.passed = not split
    return v
