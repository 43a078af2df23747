"""Whole-run time: `eden-mlx train` (MLX backend) against `python -m mlx_lm lora`, as whole
commands from process start to exit, on one epoch of the same conversations.

What a user waits for: start-up (imports, planning), model load, compilation and the first step,
the training steps, evaluation and checkpoint writes all count. Both tools get:
- the same locally built Qwen2 model (tiny 1.3M, or ~40M with `--model 40m`), float32 (the fast
  exact dtype on MLX's CPU backend; `model.dtype: auto` picks it for eden), micro-batch 4, LoRA
  r=8 on all seven projections of every layer, max length 512, learning rate 1e-4;
- the same seeded synthetic Korean/English chats (30-540 tokens, most of them multi-turn), one
  epoch of the train split, the same validation split evaluated twice (mlx_lm: before step 1 and
  after the last, as it always does; eden: in the middle and after the last), each tool's default
  checkpoint cadence (every 100 steps) and its final adapter write;
- the same BLAS: MKL preloaded for both (LD_PRELOAD of the venv's libmkl_rt.so, eden's
  KMP_BLOCKTIME) with `--blas mkl` (the default when the mkl wheel is installed), or no preload
  for either;
- torch hidden from transformers in both (eden does this itself; mlx_lm would otherwise import it
  for nothing), which only helps mlx_lm.

Eden trains every assistant turn (packed rows); mlx_lm.lora with --mask-prompt trains only the
last turn of each conversation (padded rows). The work compared is one epoch of the same
conversations, so the figure is wall time per epoch, not trained tokens/s.

Measured per round (the order of the tools alternates every round): whole-process wall time
(the parent's clock around the child), the child's peak RSS (wait4) and MLX's allocator peak
(mx.get_peak_memory at exit, the same line for both), step times read the same way for both (the
time between consecutive per-step report lines, each line stamped by the same wrapper when it is
written; the first step includes compilation and is reported apart), and the load average. The
BLAS rate (fp32 1024^2 matmul GFLOP/s) is measured at the start and end of the benchmark.

    python benchmarks/whole_run.py                     # short: tiny, 240 conversations, 3 rounds
    python benchmarks/whole_run.py --model 40m --conversations 40 --tag 40m
    python benchmarks/whole_run.py --model 40m --conversations 220 --tag 40m-long  # mlx_lm >= 5 min

Writes benchmarks/results/whole_run[-TAG].json and prints medians with their spread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (  # benchmarks/ is sys.path[0] when run as python benchmarks/whole_run.py
    EDEN_STEP,
    KEYS,
    MLX_LM_STEP,
    QWEN2_40M,
    ROOT,
    TINY,
    blas_env,
    matmul_rate,
    run_stamped,
)

sys.path.insert(0, str(ROOT))
import mlx_eden.backends.mlx  # noqa: E402,F401  (MKL before mlx.core, as in training)

MAX_LEN, LR, RANK, BATCH = 512, 1e-4, 8, 4
MODELS = {"tiny": TINY, "40m": QWEN2_40M}

# ---------------------------------------------------------------------------- data

KO = ("오늘 날씨가 좋아서 산책을 했어요. 회의는 내일 오후 세 시로 옮겼습니다. 이 코드는 리스트를 "
      "정렬한 다음 중복을 제거합니다. 서울에서 부산까지 기차로 두 시간 반 걸려요. 주문하신 책이 "
      "내일 도착할 예정입니다. 함수의 반환값을 먼저 확인해 보세요. 커피 한 잔과 케이크를 주세요. "
      "데이터베이스 연결이 끊어지면 다시 시도합니다. 저녁에는 가족과 함께 영화를 봤어요. 이 문장을 "
      "영어로 번역해 주시겠어요? 변수 이름은 짧고 분명하게 짓는 것이 좋습니다. 다음 주 월요일까지 "
      "보고서를 제출해야 해요.").split(". ")


def _sentences() -> list[str]:
    corpus = (ROOT / "mlx_eden" / "assets" / "tokenizer_corpus.txt").read_text().splitlines()
    english = [x.strip() for x in corpus if x.strip() and not x.startswith("```")]
    return english + [s.rstrip(".") + "." for s in KO] * 8  # ~1 in 10 sentences Korean


def target_lengths(n: int, seed: int) -> list[int]:
    """n lengths in 30-540 tokens, at evenly spaced quantiles (half log-uniform 30-200, half
    uniform 200-540) so even a few conversations span the range; shuffled."""
    import numpy as np

    out = []
    for q in (np.arange(n) + 0.5) / n:
        if q < 0.5:
            out.append(int(math.exp(math.log(30) + q / 0.5 * math.log(200 / 30))))
        else:
            out.append(int(200 + (q - 0.5) / 0.5 * 340))
    return [out[i] for i in np.random.default_rng(seed).permutation(n)]


def write_chats(folder: Path, model_dir: Path, n_train: int, n_valid: int) -> dict:
    """Seeded conversations grown turn by turn to their target length in this model's tokens;
    returns the length and turn statistics of the train split."""
    import numpy as np
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    lines, rng = _sentences(), np.random.default_rng(0)

    def size(messages):
        return len(tok.apply_chat_template(messages, tokenize=True, return_dict=False))

    def conversation(target):
        messages = []
        while not messages or size(messages) < target:
            messages += [{"role": "user", "content": lines[rng.integers(len(lines))]},
                         {"role": "assistant", "content": lines[rng.integers(len(lines))]}]
            while size(messages) < target - 30 and rng.random() < 0.6:
                messages[-1]["content"] += " " + lines[rng.integers(len(lines))]
        while size(messages) > 540 and len(messages) > 2:  # the 30-540 range: drop a turn
            messages = messages[:-2]
        return messages

    folder.mkdir(parents=True, exist_ok=True)
    stats = {}
    for split, n, seed in (("train", n_train, 1), ("valid", n_valid, 2)):
        rows = [{"messages": conversation(t)} for t in target_lengths(n, seed)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                       for r in rows))
        sizes = [size(r["messages"]) for r in rows]
        stats[split] = {"conversations": n, "tokens_min": min(sizes), "tokens_max": max(sizes),
                        "tokens_mean": round(statistics.mean(sizes)),
                        "multi_turn": round(sum(len(r["messages"]) > 2 for r in rows) / n, 3)}
    return stats


# ---------------------------------------------------------------------------- the tools

def mlx_lm_command(model_dir: Path, data: Path, work: Path, n_train: int) -> list[str]:
    config = {"model": str(model_dir), "train": True, "data": str(data),
              "fine_tune_type": "lora", "optimizer": "adamw", "num_layers": -1,
              "batch_size": BATCH, "iters": n_train // BATCH, "val_batches": -1,
              "learning_rate": LR, "steps_per_report": 1, "steps_per_eval": 10**6,
              "adapter_path": str(work / "adapter"), "max_seq_length": MAX_LEN,
              "mask_prompt": True, "seed": 0, "grad_checkpoint": False,
              "lora_parameters": {"rank": RANK, "scale": 2.0, "dropout": 0.0, "keys": KEYS}}
    (work / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return ["mlx_lm", "lora", "-c", str(work / "config.yaml")]


def eden_steps(model_dir: Path, data: Path) -> int:
    """Optimizer steps of eden's packed epoch (to place its middle evaluation)."""
    from mlx_eden.data.render import load_tokenizer
    from mlx_eden.data.splits import load_splits
    from mlx_eden.recipe import load_recipe
    from mlx_eden.run.train import make_plans

    recipe = load_recipe(ROOT / "recipes/tiny-demo.yaml", eden_sets(model_dir, data, 0))
    plan, _ = make_plans(recipe, load_splits(recipe.data, load_tokenizer(model_dir), 0), 0)
    return len(plan)


def eden_sets(model_dir: Path, data: Path, eval_every: int) -> list[str]:
    return [f"model.path={model_dir}", "model.dtype=auto", f"adapter.rank={RANK}",
            f"adapter.alpha={2 * RANK}", "adapter.dropout=0.0", "adapter.layers=-1",
            f"data.train={data / 'train.jsonl'}", f"data.valid={data / 'valid.jsonl'}",
            "data.test=[]", f"data.max_seq_length={MAX_LEN}", "data.packing=true",
            "train.epochs=1", f"train.batch_size={BATCH}", "train.grad_accumulation=1",
            f"train.learning_rate={LR}", "train.warmup_steps=0", f"train.eval_every={eval_every}",
            "train.eval_batches=-1", "train.save_every=100", "train.log_every=1",
            "train.backend=mlx", "eval.after_train=false"]


def eden_command(model_dir: Path, data: Path, work: Path, eval_every: int,
                 extra: list[str]) -> list[str]:
    sets = eden_sets(model_dir, data, eval_every) + extra
    return ["mlx_eden.cli", "train", str(ROOT / "recipes/tiny-demo.yaml"), "--output",
            str(work / "run"), "--no-dashboard"] + [a for s in sets for a in ("--set", s)]


def run_tool(argv: list[str], work: Path, env: dict, step_line: re.Pattern) -> dict:
    """Run one tool to completion; whole-process wall time, RSS, MLX peak and step times."""
    run = run_stamped(argv, work, env)
    steps = [t for t, line in run["lines"] if step_line.match(line)]
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    return {"wall_s": round(run["wall"], 3), "steps": len(steps),
            "step_s_median": round(statistics.median(gaps), 4) if gaps else None,
            "steps_s_sum": round(sum(gaps), 3), "rss_gb": round(run["rss_bytes"] / 1e9, 3),
            "peak_gb": round(run["peak_bytes"] / 1e9, 4), "mkl": run["mkl"],
            "phases": eden_phases(work)}


def eden_phases(work: Path) -> dict | None:
    run_json = work / "run" / "run.json"
    return json.loads(run_json.read_text()).get("phases") if run_json.exists() else None


def blas_rate(env: dict) -> float:
    return round(matmul_rate(env)[0], 1)


# ---------------------------------------------------------------------------- summary

def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def summarise(rounds: list[dict]) -> dict:
    out = {}
    for tool in ("eden", "mlx_lm"):
        out[tool] = {k: spread([r[tool][k] for r in rounds])
                     for k in ("wall_s", "peak_gb", "rss_gb")}
    out["speedup"] = spread([r["mlx_lm"]["wall_s"] / r["eden"]["wall_s"] for r in rounds])
    out["peak_ratio"] = spread([r["eden"]["peak_gb"] / r["mlx_lm"]["peak_gb"] for r in rounds])
    return out


def run_round(r: int, tools: dict, root: Path, env: dict) -> dict:
    """Both tools once, in the order of this round (alternating), with the load around them."""
    order = ["eden", "mlx_lm"] if r % 2 == 0 else ["mlx_lm", "eden"]
    result = {"order": order, "load_start": os.getloadavg()[0]}
    for tool in order:
        work = root / f"r{r}-{tool}"
        work.mkdir()
        command, step_line = tools[tool]
        result[tool] = run_tool(command(work), work, env, step_line)
    result["load_end"] = os.getloadavg()[0]
    e, m = result["eden"], result["mlx_lm"]
    print(f"round {r + 1}: eden {e['wall_s']:.1f} s, mlx_lm {m['wall_s']:.1f} s, "
          f"x{m['wall_s'] / e['wall_s']:.2f}; peak {e['peak_gb']:.3f} vs {m['peak_gb']:.3f} GB; "
          f"load {result['load_start']:.1f}->{result['load_end']:.1f}", flush=True)
    return result


def write_result(out: Path, head: dict, rounds: list[dict], complete: bool) -> dict:
    """All rounds so far (rewritten after each round: a cut-short run keeps what it measured)."""
    result = {**head, "complete": complete, "summary": summarise(rounds), "rounds": rounds}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    tmp_out.replace(out)
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="tiny")
    ap.add_argument("--conversations", type=int, default=240, help="train split size")
    ap.add_argument("--valid", type=int, default=8, help="validation split size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blas", choices=("mkl", "none"), default=None,
                    help="mkl: LD_PRELOAD libmkl_rt + eden's KMP_BLOCKTIME for both (default when "
                    "installed); none: the wheel's bundled BLAS for both")
    ap.add_argument("--tag", default="", help="result file suffix: whole_run-TAG.json")
    ap.add_argument("--eden-set", action="append", default=[], metavar="KEY=VALUE",
                    help="one more eden-mlx --set (e.g. train.attention=fused); repeatable")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Build model and data, run both tools `--rounds` times alternating, write the JSON."""
    args = parse(argv)
    from mlx_eden.backends.mlx import blas
    from mlx_eden.commands.doctor import collect
    from mlx_eden.tiny import TinySpec, write_tiny

    mode = args.blas or ("mkl" if blas.mkl_library() else "none")
    env = blas_env(mode)
    started, rate_start = time.time(), blas_rate(env)
    out = ROOT / "benchmarks" / "results" / (f"whole_run-{args.tag}.json" if args.tag
                                             else "whole_run.json")
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="eden-whole-") as tmp:
        root = Path(tmp)
        model_dir = write_tiny(root / args.model, TinySpec(**MODELS[args.model]))
        data = root / "data"
        data_stats = write_chats(data, model_dir, args.conversations, args.valid)
        steps = eden_steps(model_dir, data)
        tools = {"eden": (lambda w: eden_command(model_dir, data, w, max(1, steps // 2),
                                                 args.eden_set), EDEN_STEP),
                 "mlx_lm": (lambda w: mlx_lm_command(model_dir, data, w, args.conversations),
                            MLX_LM_STEP)}
        head = {"benchmark": "whole_run", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": collect(), "blas": {"mode": mode, **env,
                                               "matmul_gflops_start": rate_start},
                "settings": {"model": args.model, "spec": MODELS[args.model], "rank": RANK,
                             "micro_batch": BATCH, "max_seq_length": MAX_LEN, "lr": LR,
                             "dtype": "float32", "eden_steps": steps,
                             "mlx_lm_steps": args.conversations // BATCH, "data": data_stats,
                             "eden_sets": args.eden_set}}
        for r in range(args.rounds):
            rounds.append(run_round(r, tools, root, env))
            write_result(out, head, rounds, complete=False)
    head["blas"]["matmul_gflops_end"] = blas_rate(env)
    head["minutes"] = round((time.time() - started) / 60, 1)
    s = write_result(out, head, rounds, complete=True)["summary"]
    print(f"{args.model}, {args.conversations} conversations, {args.rounds} rounds: eden "
          f"{s['eden']['wall_s']['median']} s vs mlx_lm {s['mlx_lm']['wall_s']['median']} s, "
          f"x{s['speedup']['median']} ({s['speedup']['min']}-{s['speedup']['max']}); peak "
          f"x{s['peak_ratio']['median']}; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
