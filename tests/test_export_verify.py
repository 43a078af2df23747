"""The deployment check on the model as trained: a QLoRA run on the 4-bit tiny base, fused,
written as q4_k_m GGUF and verified in llama.cpp against the 4-bit base + adapter in MLX; the
adapter as a llama.cpp LoRA from the 4-bit folder; and verdicts that near-ties cannot flip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import ROOT, run_cli

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def qlora_run(tiny_qwen2, tmp_path_factory):
    """A real QLoRA run as the 32B journey makes one (MLX, float base quantized to 4 bits at
    load time) and its fused folder."""
    out = tmp_path_factory.mktemp("qlora")
    run_cli("train", ROOT / "recipes" / "tiny-demo.yaml", "--backend", "mlx",
            "--set", f"model.path={tiny_qwen2}", "--set", "model.quantize.bits=4",
            "--set", "train.max_steps=6",
            "--set", "data.max_seq_length=128", "--set", "train.learning_rate=1e-2",
            "--set", "train.eval_every=0", "--set", "train.save_every=0",
            "--output", out / "run", "--no-dashboard", check=True)
    adapter = out / "run" / "adapter"
    run_cli("fuse", "--model", tiny_qwen2, "--adapter", adapter, "--output",
            out / "fused", "--dtype", "f32", check=True)
    return out, adapter


def test_q4_k_m_verified_against_the_model_as_trained(qlora_run, tiny_qwen2, tiny_qwen2_4bit):
    from mlx_eden.backends.mlx.inference import folder_logits, folder_outputs
    from mlx_eden.export.probe import probe_ids

    out, adapter = qlora_run
    prompts = probe_ids(tiny_qwen2)[:2]
    trained, _ = folder_outputs(tiny_qwen2, prompts, adapter, 1, as_trained=True)
    as_4bit_folder = folder_logits(tiny_qwen2_4bit, prompts, adapter)
    on_float = folder_logits(tiny_qwen2, prompts, adapter)
    for t, q, f in zip(trained, as_4bit_folder, on_float, strict=True):
        # the reference is the base quantized as the run did, not the float base it came from
        assert np.abs(t - q).max() < 1e-4 < np.abs(t - f).max()
    made_from = json.loads((out / "fused" / "eden_fuse.json").read_text())
    assert made_from["adapter"] == str(adapter.resolve())
    proc = run_cli("export", "gguf", out / "fused", "--quant", "q4_k_m", "--output",
                   out / "m.gguf", "--verify")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(x.startswith("memory, one phase at a time: llama.cpp") and "then MLX (trained)"
               in x for x in lines)
    assert any(x.startswith("PASS") and "its source (file reading)" in x for x in lines)
    assert any(x.startswith("PASS") and "the model as trained" in x for x in lines)
    assert any("greedy: first 32 tokens identical" in x for x in lines)


def test_gguf_lora_from_the_4bit_folder_on_a_base_gguf(qlora_run, tiny_qwen2, tiny_qwen2_4bit):
    """No de-quantized base needed: names come from the 4-bit folder; llama.cpp applies the
    LoRA on a q4_k_m base GGUF and lands within the quantization gap of the fused model."""
    from mlx_eden.backends.mlx.inference import folder_logits
    from mlx_eden.export.llamacpp import LlamaCpp
    from mlx_eden.export.probe import compare, probe_ids
    from mlx_eden.export.to_gguf import export_gguf
    from mlx_eden.export.verify import GAP

    out, adapter = qlora_run
    base_gguf = export_gguf(tiny_qwen2, out / "base-q4_k_m.gguf", "q4_k_m").path
    lora = out / "adapter.gguf"
    refused = run_cli("export", "gguf-lora", adapter, "--model", tiny_qwen2_4bit, "--output",
                      lora, "--verify")
    assert refused.returncode == 2 and "--base-gguf" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and lora.exists()  # the file is written
    proc = run_cli("export", "gguf-lora", adapter, "--model", tiny_qwen2_4bit, "--output", lora,
                   "--base-gguf", base_gguf, "--verify")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr
    assert "quantization gap" in proc.stdout
    prompts = probe_ids(tiny_qwen2_4bit)
    llm = LlamaCpp(base_gguf, lora=lora)
    got = llm.all_logits(prompts)
    llm.close()
    bare = LlamaCpp(base_gguf)
    without = bare.all_logits(prompts)
    bare.close()
    fused = folder_logits(out / "fused", prompts)
    d, d_bare = compare(got, fused), compare(without, fused)
    print(f"LoRA on the q4_k_m base vs the fused model: {d}\n  without the LoRA: {d_bare}")
    assert d.rel <= GAP[0] and d.decided_agree >= GAP[1]
    assert d.rel < 0.5 * d_bare.rel  # the adapter is applied, not the bare base


def test_a_near_tie_no_longer_flips_the_verdict(tiny_qwen2):
    """Real logits of the tiny model; at one probe's last position the reference's top two are
    made a near-tie and the artifact picks the other one: that used to fail the file
    (last_argmax_equal), now it is left out; the same flip where the margin is clear fails."""
    from mlx_eden.backends.mlx.inference import folder_logits
    from mlx_eden.export.probe import TIE_MARGIN, compare, probe_ids
    from mlx_eden.export.verify import judge

    ref = folder_logits(tiny_qwen2, probe_ids(tiny_qwen2))
    rng = np.random.default_rng(0)
    std = np.concatenate(ref).std()
    got = [r + rng.normal(0, 1e-3 * std, r.shape).astype(np.float32) for r in ref]

    def flip_last(margin: float):
        b = [r.copy() for r in ref]
        a = [g.copy() for g in got]
        top, second = np.argsort(b[0][-1])[-1], np.argsort(b[0][-1])[-2]
        b[0][-1, second] = b[0][-1, top] - margin * std  # reference: top ahead by `margin`
        a[0][-1, second] = a[0][-1, top] + 1e-3 * std  # artifact: the other one ahead
        return compare(a, b)

    tie = flip_last(TIE_MARGIN / 10)
    print(f"near-tie: {tie}")
    assert not tie.last_argmax_equal  # the old verdict's condition: it would have failed
    assert tie.last_decided_equal and tie.ties >= 1 and judge(tie, "q4_k_m")
    clear = flip_last(TIE_MARGIN * 4)
    assert not clear.last_decided_equal and not judge(clear, "q4_k_m")


def test_memory_refused_only_when_the_larger_phase_does_not_fit():
    from mlx_eden.errors import UserError
    from mlx_eden.export.verify import check_phases

    gib = 1 << 30
    line = check_phases({"llama.cpp": 18 * gib, "MLX (trained)": 20 * gib}, total=36 * gib)
    assert "llama.cpp 18.00 GiB, then MLX (trained) 20.00 GiB" in line  # 38 together: not asked
    with pytest.raises(UserError, match="the MLX \\(float\\) phase needs about 244"):
        check_phases({"llama.cpp": 18 * gib, "MLX (float)": 244 * gib}, total=36 * gib)


def test_a_file_without_the_adapter_fails_the_trained_check(qlora_run, tiny_qwen2):
    """The mutation the trained reference exists for: the base exported instead of the fused
    model reads back perfectly (file reading passes) but is far from the model as trained."""
    from mlx_eden.export.to_gguf import export_gguf
    from mlx_eden.export.verify import verify_gguf

    out, adapter = qlora_run
    path = export_gguf(tiny_qwen2, out / "bare-q4_k_m.gguf", "q4_k_m").path
    reading, gap = verify_gguf(path, tiny_qwen2, "q4_k_m", "trained", (tiny_qwen2, adapter))
    print(*reading.lines(), *gap.lines(), sep="\n")
    assert reading.passed and not gap.passed and gap.delta.rel > 0.5
    _, against_itself = verify_gguf(path, tiny_qwen2, "q4_k_m", "fused")
    assert against_itself.passed and against_itself.delta.rel < 0.25 * gap.delta.rel


def test_trained_reference_needs_base_and_adapter(tiny_qwen2, tmp_path):
    proc = run_cli("export", "gguf", tiny_qwen2, "--quant", "f32", "--output", tmp_path / "x.gguf",
                   "--verify", "--reference", "trained")
    assert proc.returncode == 2 and "--base MODEL --adapter DIR" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.gguf").exists()
