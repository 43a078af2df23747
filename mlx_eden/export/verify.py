"""`--verify`: load each artifact in its real consumer and compare it with MLX on the probe
prompts. The thresholds are scale-free (mean |Δ| / std of the reference logits) so they hold for
a tiny test model and a 32B alike; every figure is reported, pass or fail."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..units import GIB
from .probe import Delta, compare, hf_ids, nfd_note, probe_texts

# quant → (largest mean|Δ|/std, smallest argmax agreement, reference it is compared against)
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

    def lines(self) -> list[str]:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.artifact} in {self.consumer} " \
               f"vs {self.reference}"
        out = [head]
        if self.delta is not None:
            out.append(f"  logits: {self.delta}")
        if self.float_gap is not None:
            out.append(f"  vs the float model (quantization error): {self.float_gap}")
        out += [f"  tokenizer differs: {m}" for m in self.tokenizer_mismatches]
        out += [f"  {n}" for n in self.notes]
        return out


def check_memory(model_dir: Path, artifact_bytes: int) -> None:
    """Refuse up front (instead of swapping or being killed) when the float32 reference plus
    the artifact in its consumer cannot fit in this machine's memory."""
    from .files import parameter_count

    params = parameter_count(model_dir)
    need = params * 4 * 2 + artifact_bytes  # reference weights + the consumer's float copy
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * total:
        raise UserError(f"--verify needs about {need / GIB:.0f} GiB (float32 references of "
                        f"{params / 1e9:.1f}B parameters and the artifact); this machine has "
                        f"{total / GIB:.0f} GiB", hint="the file is written; verify it on a "
                        "larger machine or a smaller model of the same recipe")


def judge(delta: Delta, kind: str) -> bool:
    rel, agree, _ = CRITERIA[kind]
    return delta.rel <= rel and delta.argmax_agree >= agree and delta.last_argmax_equal


def tokenizer_mismatches(llm, model_dir: Path) -> list[str]:
    """Probe texts on which llama.cpp's ids differ from the Hugging Face tokenizer's."""
    texts = probe_texts(model_dir)
    out = []
    for text, ids in zip(texts, hf_ids(model_dir, texts), strict=True):
        if llm.tokenize(text) != ids:
            out.append(repr(text[:40]))
    return out


def verify_gguf(gguf_path: Path, model_dir: Path, quant: str, max_tokens: int = 96) -> Verdict:
    """The GGUF in llama.cpp against MLX: tokenizer ids, then logits on every probe position."""
    from ..backends.mlx import inference
    from .llamacpp import LlamaCpp
    from .readback import dequantized_weights

    check_memory(model_dir, gguf_path.stat().st_size)
    v = Verdict(str(gguf_path), "llama.cpp (f32 KV cache)", CRITERIA[quant][2])
    texts = probe_texts(model_dir)
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, texts)]
    llm = LlamaCpp(gguf_path, n_ctx=max(256, max_tokens))
    try:
        v.tokenizer_mismatches = tokenizer_mismatches(llm, model_dir)
        v.notes.append(nfd_note(llm.tokenize, model_dir))
        got = llm.all_logits(prompts)
    finally:
        llm.close()
    exact = inference.folder_logits(model_dir, prompts)
    if quant in ("f32", "f16", "bf16"):
        want = exact
    else:
        # Against its own de-quantized weights the check proves the file is read as written;
        # a bad quantizer would pass that, so the gap to the float model is reported too.
        want = inference.weights_logits(model_dir, dequantized_weights(gguf_path, model_dir),
                                        prompts)
        v.float_gap = compare(got, exact)
    v.delta = compare(got, want)
    v.passed = judge(v.delta, quant) and not v.tokenizer_mismatches
    return v


def verify_gguf_lora(lora_path: Path, base_gguf: Path, model_dir: Path, adapter_dir: Path,
                     max_tokens: int = 96) -> Verdict:
    """llama.cpp with the LoRA GGUF on a float32 base GGUF vs MLX base + adapter; and proof it
    applied (llama.cpp would otherwise quietly run the bare base)."""
    from ..backends.mlx import inference
    from .llamacpp import LlamaCpp

    check_memory(model_dir, base_gguf.stat().st_size)
    v = Verdict(str(lora_path), "llama.cpp (LoRA on an f32 base GGUF)", CRITERIA["lora"][2])
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]
    with_lora = LlamaCpp(base_gguf, lora=lora_path, n_ctx=max(256, max_tokens))
    got = with_lora.all_logits(prompts)
    with_lora.close()
    bare = LlamaCpp(base_gguf, n_ctx=max(256, max_tokens))
    base = bare.all_logits(prompts)
    bare.close()
    v.delta = compare(got, inference.folder_logits(model_dir, prompts, adapter_dir))
    effect = compare(got, base)
    v.notes.append(f"adapter effect in llama.cpp (with vs without): {effect}")
    applied = effect.rel > 10 * v.delta.rel
    if not applied:
        v.notes.append("the adapter did not change llama.cpp's logits: it was not applied")
    v.passed = judge(v.delta, "lora") and applied
    return v


def verify_peft(peft_dir: Path, model_dir: Path, adapter_dir: Path,
                max_tokens: int = 96) -> Verdict:
    """The PEFT folder in peft.PeftModel (torch, float32) vs MLX base + adapter."""
    from ..backends.mlx import inference
    from ..backends.torch.peft_logits import peft_logits

    check_memory(model_dir, 0)
    v = Verdict(str(peft_dir), "peft.PeftModel (torch, float32)", CRITERIA["lora"][2])
    prompts = [ids[:max_tokens] for ids in hf_ids(model_dir, probe_texts(model_dir))]
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
