"""DPO and KTO (issue 19): the loss values against TRL's formulas, policy = reference at the first
step on both backends, MLX = torch, the reference pass cached in the run directory, exact resume
after SIGKILL, a tiny-model demonstration that the objectives learn a preference, and bad data."""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlx_eden import objectives as O
from mlx_eden.recipe import load_recipe

from .conftest import EDEN, ROOT, needs_torch, run_cli

DEMO = ROOT / "recipes" / "tiny-demo.yaml"
CATS = ["I like cats.", "Cats are lovely.", "A cat, please.", "My cat is great."]
DOGS = ["I like dogs.", "Dogs are lovely.", "A dog, please.", "My dog is great."]
TOPICS = ["pets", "animals", "a companion", "my flat", "the garden", "weekends", "a gift"]


def prompt(i: int) -> str:
    return f"Q{i}, {TOPICS[i % len(TOPICS)]}: pet?"


def write_data(path: Path, kind: str, n: int, start: int = 0) -> Path:
    """The learnable pattern: cat answers are preferred to dog answers, whatever the prompt."""
    with open(path, "w") as f:
        for i in range(start, start + n):
            cat, dog = CATS[i % 4], DOGS[(i // 4) % 4]
            if kind == "dpo":
                rec = {"prompt": prompt(i), "chosen": cat, "rejected": dog}
            else:
                good = i % 2 == 0
                rec = {"prompt": prompt(i), "completion": cat if good else dog, "label": good}
            f.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """These tests train in-process. On the shared 2-core box MKL's threads oversubscribe it:
    a tiny DPO step measured 1-8 s with the default threads and 0.2 s with one (the CLI tests
    get OMP_NUM_THREADS=1 in their environment instead, see test_torch_run.py)."""
    import ctypes

    from mlx_eden.backends.mlx.blas import mkl_library

    path = mkl_library()
    if path:
        ctypes.CDLL(path).MKL_Set_Num_Threads(1)
    yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("prefdata")
    return {k: (write_data(d / f"{k}-train.jsonl", k, 48),
                write_data(d / f"{k}-valid.jsonl", k, 16, start=1000)) for k in ("dpo", "kto")}


def overrides(model, kind, files, backend="mlx", **kw) -> dict:
    base = {"model.path": str(model), "train.backend": backend, "train.objective": kind,
            "data.train": f"[{files[0]}]", "data.valid": f"[{files[1]}]", "data.test": "[]",
            "data.packing": "false", "data.max_seq_length": 96, "model.dtype": "float32",
            "train.batch_size": 4, "train.warmup_steps": 0, "train.log_every": 1,
            "train.eval_every": 0, "train.save_every": 0, "train.num_threads": 1,
            "train.learning_rate": 2e-3, "train.schedule": "constant"}
    base.update(kw)
    return base


class Session:
    """A backend set up as `eden-mlx train` sets it up, with its plans and reference filled."""

    def __init__(self, model, kind, files, backend, tmp: Path, **kw):
        from mlx_eden.backends.base import load_backend
        from mlx_eden.data.preference import load_preference
        from mlx_eden.data.render import load_tokenizer
        from mlx_eden.run.reference import reference_pass
        from mlx_eden.run.train import make_plans

        o = overrides(model, kind, files, backend, **kw)
        self.recipe = load_recipe(DEMO, [f"{k}={v}" for k, v in o.items()])
        tok = load_tokenizer(model)
        splits = load_preference(self.recipe.data, tok, 0, kind)
        self.backend = load_backend(backend)
        self.backend.setup(self.recipe, Path(model))
        self.train, self.valid = make_plans(self.recipe, splits, tok.eos_token_id)
        self.events = []
        tmp.mkdir(parents=True, exist_ok=True)
        reference_pass(self.backend, {"train": self.train, "valid": self.valid}, self.recipe,
                       tmp, self.events.append)

    def evaluate(self) -> tuple[float, dict]:
        loss, items, sums = 0.0, 0, {}
        for b in self.valid.in_order():
            s, n, m = self.backend.preference_loss(b)
            loss, items = loss + s, items + n
            O.add(sums, m, float)
        return loss / items, O.finish(sums, items)

    def train_steps(self, n: int, start: int = 1) -> list:
        return [self.backend.train_step([self.train.at(k - 1)[1]], 2e-3, k)
                for k in range(start, start + n)]


ONE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # see one_blas_thread
BACKENDS = ["mlx", pytest.param("torch", marks=needs_torch)]


# --------------------------------------------------------------------------- losses vs TRL

def trl_losses(kind: str, pc, pr, rc, rr, beta, ls=0.0, counts=None, labels=None, kl_pi=None,
               kl_ref=None, dw=1.0, uw=1.0):
    """TRL 1.16's formulas, copied from trl/trainer/dpo_trainer.py and kto_trainer.py
    (`_compute_loss`): TRL computes them inline in a method that needs a model and an
    accelerator, so they cannot be called on tensors; `test_trl_source_has_these_formulas`
    checks that the installed TRL still contains these lines."""
    import torch
    import torch.nn.functional as F

    if kind == "sigmoid":
        delta_score = (pc - rc) - (pr - rr)
        return -F.logsigmoid(beta * delta_score)
    if kind == "smoothed":  # TRL's conservative-DPO form (its `aot` branch, ex-`sigmoid`)
        delta = (pc - pr) - (rc - rr)
        return (-F.logsigmoid(beta * delta) * (1 - ls) - F.logsigmoid(-beta * delta) * ls)
    if kind == "ipo":
        chosen_avg_score = (pc - rc) / counts[0].clamp(min=1.0)
        rejected_avg_score = (pr - rr) / counts[1].clamp(min=1.0)
        ipo_delta = chosen_avg_score - rejected_avg_score
        return (ipo_delta - 1 / (2 * beta)) ** 2
    # kto: pc/rc are the answers' policy/reference log-probs, labels True = desirable
    kl = (kl_pi - kl_ref).mean().detach().clamp(min=0)
    chosen_logratios = pc[labels] - rc[labels]
    rejected_logratios = pc[~labels] - rc[~labels]
    chosen_losses = 1 - F.sigmoid(beta * (chosen_logratios - kl))
    rejected_losses = 1 - F.sigmoid(beta * (kl - rejected_logratios))
    return torch.cat((dw * chosen_losses, uw * rejected_losses), 0)


@needs_torch
def test_trl_source_has_these_formulas():
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer

    dpo, kto = inspect.getsource(DPOTrainer._compute_loss), \
        inspect.getsource(KTOTrainer._compute_loss)
    for line in ("per_sequence_loss = -F.logsigmoid(self.beta * delta_score)",
                 "per_sequence_loss = (ipo_delta - 1 / (2 * self.beta)) ** 2",
                 "-F.logsigmoid(self.beta * delta) * (1 - self.label_smoothing)",
                 "chosen_avg_score = chosen_scores / chosen_mask.sum(dim=1).clamp(min=1.0)"):
        assert line in dpo, line
    for line in ("kl = (KL_logps - ref_KL_logps).mean().detach()",
                 "chosen_losses = 1 - F.sigmoid(self.beta * (chosen_logratios - kl))",
                 "rejected_losses = 1 - F.sigmoid(self.beta * (kl - rejected_logratios))",
                 "(self.desirable_weight * chosen_losses, self.undesirable_weight * "
                 "rejected_losses)"):
        assert line in kto, line


def _spec(**kw):
    return load_recipe(DEMO, [f"train.{k}={v}" for k, v in kw.items()]).train


def _ours(backend: str, kind: str, pi, ref, counts, labels, n, t):
    if backend == "torch":
        import torch

        from mlx_eden.backends.torch.objectives import OPS
        arr = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    else:
        import mlx.core as mx

        from mlx_eden.backends.mlx.objectives import OPS
        arr = lambda a: mx.array(np.asarray(a, np.float32))  # noqa: E731
    total, metrics = O.compute(OPS, kind, arr(pi), arr(ref), arr(counts), arr(labels), n, t)
    return OPS.to_float(total) / n, O.finish(O.add({}, metrics, OPS.to_float), n)


@needs_torch
@pytest.mark.parametrize("backend", ["mlx", "torch"])
@pytest.mark.parametrize("case", ["sigmoid", "smoothed", "ipo", "kto", "kto-weighted",
                                  "kto-negative-kl"])
def test_losses_equal_trl(backend, case):
    import torch

    rng = np.random.default_rng(3)
    n = 6
    pi = rng.normal(-40, 6, 2 * n)
    ref = pi + rng.normal(0, 2, 2 * n)
    counts = rng.integers(3, 30, 2 * n).astype(float)
    labels = np.array([1, 0, 1, 1, 0, 0], float)
    T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    if case in ("sigmoid", "smoothed", "ipo"):
        t = _spec(objective="dpo", beta=0.2, dpo_loss="ipo" if case == "ipo" else "sigmoid",
                  label_smoothing=0.15 if case == "smoothed" else 0.0)
        want = trl_losses(case, T(pi[:n]), T(pi[n:]), T(ref[:n]), T(ref[n:]), 0.2, 0.15,
                          counts=(T(counts[:n]), T(counts[n:])))
        got, metrics = _ours(backend, "dpo", pi, ref, counts, labels, n, t)
        if case != "ipo":
            rewards = 0.2 * (pi[:n] - ref[:n]), 0.2 * (pi[n:] - ref[n:])
            assert metrics["reward_chosen"] == pytest.approx(rewards[0].mean(), abs=1e-5)
            assert metrics["reward_margin"] == pytest.approx((rewards[0] - rewards[1]).mean(),
                                                             abs=1e-5)
    else:
        dw, uw = (1.5, 0.7) if case == "kto-weighted" else (1.0, 1.0)
        t = _spec(objective="kto", beta=0.3, desirable_weight=dw, undesirable_weight=uw)
        sign = -1.0 if case == "kto-negative-kl" else 1.0  # a negative estimate is clamped to 0
        pi[n:] = ref[n:] + sign * np.abs(rng.normal(0, 3, n))
        want = trl_losses("kto", T(pi[:n]), None, T(ref[:n]), None, 0.3, labels=T(labels) > 0.5,
                          kl_pi=T(pi[n:]), kl_ref=T(ref[n:]), dw=dw, uw=uw)
        got, metrics = _ours(backend, "kto", pi, ref, counts, labels, n, t)
        assert metrics["kl"] == pytest.approx(max(np.mean(pi[n:] - ref[n:]), 0.0), abs=1e-4)
        good = labels > 0.5
        assert metrics["reward_desirable"] == pytest.approx(
            0.3 * (pi[:n] - ref[:n])[good].mean(), abs=1e-5)
    # float32 arithmetic on log-probabilities of ~-40: the losses agree to 1e-6
    assert got == pytest.approx(float(want.mean()), abs=1e-6)


# --------------------------------------------------------------------------- first step

@pytest.mark.parametrize("backend", BACKENDS)
def test_first_step_policy_is_the_reference(backend, tiny_qwen2, data, tmp_path):
    dpo = Session(tiny_qwen2, "dpo", data["dpo"], backend, tmp_path / "dpo")
    loss, metrics = dpo.evaluate()
    assert loss == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["reward_accuracy"] == 0.5 and metrics["reward_margin"] == 0.0
    step = dpo.train_steps(1)[0]
    assert step.loss == pytest.approx(math.log(2), abs=1e-6)
    assert step.grad_norm > 0  # the pair pulls the policy away from the reference
    kto = Session(tiny_qwen2, "kto", data["kto"], backend, tmp_path / "kto")
    first = kto.train_steps(1)[0]
    assert first.metrics["reward_desirable"] == 0.0
    assert first.metrics["reward_undesirable"] == 0.0 and first.metrics["kl"] == 0.0
    assert first.loss == pytest.approx(0.5, abs=1e-6)  # 1 - sigmoid(0) for every answer


@needs_torch
@pytest.mark.parametrize("kind", ["dpo", "kto"])
def test_mlx_and_torch_agree(kind, tiny_qwen2, data, tmp_path):
    runs = {b: Session(tiny_qwen2, kind, data[kind], b, tmp_path / b) for b in ("mlx", "torch")}
    np.testing.assert_allclose(runs["mlx"].train.reference, runs["torch"].train.reference,
                               rtol=1e-5, atol=1e-4)
    steps = {b: s.train_steps(2) for b, s in runs.items()}
    for a, b in zip(steps["mlx"], steps["torch"], strict=True):
        assert a.loss == pytest.approx(b.loss, abs=1e-5)
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)


# --------------------------------------------------------------------------- demonstration

def test_dpo_learns_the_preference_on_held_out_pairs(tiny_qwen2, data, tmp_path):
    s = Session(tiny_qwen2, "dpo", data["dpo"], "mlx", tmp_path)
    before = s.evaluate()[1]["reward_accuracy"]
    s.train_steps(24)
    _, after = s.evaluate()
    assert before == pytest.approx(0.5)
    assert after["reward_accuracy"] >= 0.9, after
    assert after["reward_margin"] > 0


def test_kto_moves_desirable_and_undesirable_rewards_apart(tiny_qwen2, data, tmp_path):
    s = Session(tiny_qwen2, "kto", data["kto"], "mlx", tmp_path)
    _, before = s.evaluate()
    s.train_steps(24)
    _, after = s.evaluate()
    assert before["reward_desirable"] == before["reward_undesirable"] == 0.0
    assert after["reward_desirable"] > 0 > after["reward_undesirable"], after


# --------------------------------------------------------------------------- runs and resume

def cli_sets(model, kind, files, backend, **kw) -> list[str]:
    o = overrides(model, kind, files, backend, **kw)
    return [x for k, v in o.items() for x in ("--set", f"{k}={v}")]


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if e["event"] == kind]


@pytest.mark.parametrize("backend,kind", [("mlx", "dpo"), ("mlx", "kto"),
                                          pytest.param("torch", "dpo", marks=needs_torch),
                                          pytest.param("torch", "kto", marks=needs_torch)])
def test_resume_after_sigkill_is_exact(backend, kind, tiny_qwen2, data, tmp_path):
    from .test_trainer import _wait_for

    kw = {"train.max_steps": 10, "train.save_every": 3, "adapter.dropout": 0.1,
          "train.keep_checkpoints": 5, "train.eval_every": 5}
    args = cli_sets(tiny_qwen2, kind, data[kind], backend, **kw)
    full = tmp_path / "full"
    run_cli("train", DEMO, *args, "--output", full, "--no-dashboard", check=True, env=ONE)
    killed = tmp_path / "killed"
    p = subprocess.Popen(EDEN + ["train", str(DEMO), *args, "--output", str(killed),
                                 "--no-dashboard"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**os.environ, **ONE})

    def checkpoint_written():
        m = killed / "metrics.jsonl"
        return m.exists() and '"what": "checkpoint"' in m.read_text()

    assert _wait_for(checkpoint_written, p, timeout=300), p.stderr.read() if p.stderr else ""
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert max(e["step"] for e in events(killed, "train")) < 10
    assert not list(killed.glob(".reference.npz.*"))  # no temporary file left behind
    with np.load(killed / "reference.npz") as f:
        stored = {k: f[k] for k in f.files}
    if (backend, kind) == ("mlx", "kto"):
        # Gone: the resume recomputes it from the starting weights, before the checkpoint's.
        (killed / "reference.npz").unlink()
    proc = run_cli("train", DEMO, *args, "--output", killed, "--resume", "--no-dashboard",
                   check=True, env=ONE)
    assert "reference batches=" in proc.stdout and "reused from the run directory" in proc.stdout
    with np.load(killed / "reference.npz") as f:
        for k, v in stored.items():
            np.testing.assert_allclose(f[k].astype(float), v.astype(float), atol=1e-9) \
                if v.dtype.kind == "f" else np.testing.assert_array_equal(f[k], v)
    a, b = events(full, "train"), events(killed, "train")
    assert [e["step"] for e in b] == list(range(1, 11))
    np.testing.assert_allclose([e["loss"] for e in b], [e["loss"] for e in a], atol=1e-6)
    for ea, eb in zip(a, b, strict=True):
        assert ea["metrics"].keys() == eb["metrics"].keys()
        np.testing.assert_allclose(list(eb["metrics"].values()), list(ea["metrics"].values()),
                                   atol=1e-5)
    va, vb = events(full, "eval"), events(killed, "eval")
    assert [e["val_loss"] for e in vb] == pytest.approx([e["val_loss"] for e in va], abs=1e-6)


def test_reference_is_recomputed_when_the_data_changes(tiny_qwen2, data, tmp_path):
    from mlx_eden.run.reference import FILE

    s = Session(tiny_qwen2, "dpo", data["dpo"], "mlx", tmp_path)
    assert not s.events[-1].cached
    again = Session(tiny_qwen2, "dpo", data["dpo"], "mlx", tmp_path)
    assert again.events[-1].cached and len(again.events) == 1
    np.testing.assert_array_equal(again.train.reference, s.train.reference)
    other = write_data(tmp_path / "other.jsonl", "dpo", 40, start=500)
    changed = Session(tiny_qwen2, "dpo", (other, data["dpo"][1]), "mlx", tmp_path)
    assert not changed.events[-1].cached
    assert (tmp_path / FILE).is_file()


# --------------------------------------------------------------------------- data

def test_prompt_is_never_trained_and_rendered_as_sft(tokenizer, tmp_path):
    from mlx_eden.data.formats import read_jsonl
    from mlx_eden.data.preference import render_items
    from mlx_eden.data.render import prompt_and_reference

    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello!"},
                                          {"role": "user", "content": "Pet?"}],
                             "chosen": {"role": "assistant", "content": "Cats."},
                             "rejected": "Dogs."}) + "\n")
    spec = load_recipe(DEMO).data
    items, dropped = render_items(read_jsonl(f), tokenizer, spec)
    assert dropped == 0
    chosen = items[0].samples[0]
    trained = tokenizer.decode(chosen.ids[chosen.mask])
    assert trained == "Cats.<|im_end|>"  # the earlier assistant turn "Hello!" is prompt
    rec = read_jsonl(f)[0]
    prompt_ids, _ = prompt_and_reference(
        type(rec)("chat", {"messages": rec.fields["prompt"] + [
            {"role": "assistant", "content": "Cats."}]}, rec.file, rec.line), tokenizer, spec)
    assert list(chosen.ids[: len(prompt_ids)]) == list(prompt_ids)  # SFT's own rendering


@pytest.mark.parametrize("line,message", [
    ({"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen must be a string or an assistant"),
    ({"prompt": "p", "completion": "c", "label": "yes"}, "label must be true or false"),
    ({"prompt": 5, "chosen": "c", "rejected": "r"}, "dpo record needs a prompt"),
])
def test_bad_records_name_file_and_line(line, message, tiny_qwen2, tmp_path):
    f = tmp_path / "bad.jsonl"
    good = {"prompt": "p", "chosen": "c", "rejected": "r"} if "chosen" in line else \
        {"prompt": "p", "completion": "c", "label": True}
    f.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    kind = "dpo" if "chosen" in line else "kto"
    proc = run_cli("train", DEMO, *cli_sets(tiny_qwen2, kind, (f, f), "mlx"),
                   "--output", tmp_path / "run", "--no-dashboard")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {f}:2: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_objective_and_data_must_match(tiny_qwen2, data, tmp_path):
    proc = run_cli("train", DEMO, *cli_sets(tiny_qwen2, "kto", data["dpo"], "mlx"),
                   "--output", tmp_path / "run", "--no-dashboard")
    assert proc.returncode == 2
    assert f"{data['dpo'][0]}:1: train.objective is kto but the train data is dpo" in proc.stderr




def test_kto_kl_rows_pair_each_prompt_with_the_next_answer(tokenizer, tmp_path):
    from mlx_eden.data.formats import read_jsonl
    from mlx_eden.data.preference import render_items

    f = write_data(tmp_path / "k.jsonl", "kto", 3)
    records = read_jsonl(f)
    items, _ = render_items(records, tokenizer, load_recipe(DEMO).data)
    for i, item in enumerate(items):
        twin = item.samples[1]
        nxt = records[(i + 1) % 3].fields["completion"]
        assert tokenizer.decode(twin.ids[twin.mask]) == nxt + "<|im_end|>"
        assert records[i].fields["prompt"] in tokenizer.decode(twin.ids[~twin.mask])


def test_planner_prices_two_rows_per_pair_and_unchunked_logits():
    from mlx_eden.memory.planner import Settings
    from mlx_eden.memory.shapes import load_config, shape_from_config

    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-32b-eden-m3max-dpo.yaml")
    shape = shape_from_config(load_config(recipe.model.path)[0])
    dpo = Settings.from_recipe(recipe, shape)
    assert dpo.batch == 2 * recipe.train.batch_size and dpo.loss_chunk == 0 and not dpo.packed
    kto = Settings.from_recipe(load_recipe(ROOT / "recipes" / "qwen2.5-32b-eden-m3max-kto.yaml"),
                               shape)
    assert kto.batch == 2  # KTO's batch_size 2 answers; the KL rows run without gradients
    sft = Settings.from_recipe(load_recipe(ROOT / "recipes" / "qwen2.5-32b-eden-m3max.yaml"),
                               shape)
    assert sft.batch == 1 and sft.loss_chunk == 512


def test_sft_objective_refuses_preference_data(tiny_qwen2, data, tmp_path):
    proc = run_cli("train", DEMO, *cli_sets(tiny_qwen2, "sft", data["kto"], "mlx"),
                   "--output", tmp_path / "run", "--no-dashboard")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{data['kto'][0]}:1: kto records train only with train.objective: kto" in proc.stderr


def test_dashboard_shows_the_reference_pass_then_the_rewards(monkeypatch):
    from mlx_eden.run.events import EvalEvent, ReferenceEvent

    from .test_dashboard import drive, frame, start_event, step_event

    monkeypatch.setenv("TERM", "xterm-256color")  # as test_dashboard's capable_terminal
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    events = [start_event(), ReferenceEvent(step=0, done=3, total=12)]
    dashboard, _ = drive(events)
    text = "\n".join(frame(dashboard))
    assert "ref     3/12 ━━━━" in text and "25%" in text
    ev = EvalEvent(step=1, val_loss=0.5, val_ppl=1.6, val_tokens=10, best_val_loss=0.5,
                   improved=True, patience_left=None,
                   metrics={"reward_accuracy": 0.875, "reward_margin": 0.25})
    dashboard, _ = drive([*events, ReferenceEvent(step=0, done=12, total=12), step_event(1), ev],
                         width=120)
    text = "\n".join(frame(dashboard, width=120))
    assert "3/12" not in text and "tok/s" in text  # the bar gives way to the speed
    assert "acc=0.875 margin=0.250" in text


def test_eval_loss_suite_on_a_preference_run_measures_the_preferred_answers(tiny_qwen2, data,
                                                                            tmp_path):
    """`eden-mlx eval` on a DPO run: the loss suite reads prompt/chosen/rejected records as their
    chosen answer (it raised KeyError 'completion' before), and only that answer's tokens count."""
    from mlx_eden.data.render import load_tokenizer

    run = tmp_path / "run"
    test_file = data["dpo"][1]
    run_cli("train", DEMO, "--no-dashboard", *cli_sets(tiny_qwen2, "dpo", data["dpo"], "mlx"),
            "--set", "train.max_steps=1", "--set", f"data.test=[{test_file}]",
            "--set", f"output.dir={run}", "--set", "eval.gates={}", check=True, env=ONE)
    out = run_cli("eval", run, "--suite", "heldout", "--json", check=True, env=ONE)
    metrics = json.loads(out.stdout)["suites"]["heldout"]
    tok = load_tokenizer(tiny_qwen2)
    chosen = [json.loads(x)["chosen"] for x in Path(test_file).read_text().splitlines()]
    # each answer is followed by the trained end of turn (<|im_end|>), as in SFT
    assert metrics["tokens"] == sum(len(tok.encode(c)) + 1 for c in chosen)
    assert math.isfinite(metrics["loss"])
