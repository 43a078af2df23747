"""Answer checks, validators, gates and the balanced view, on hand-made inputs (no model)."""

import sys

import pytest

from mlx_eden.eval.checks import failures, hangul_ratio, latin_ratio, max_ngram_count
from mlx_eden.eval.gates import judge
from mlx_eden.eval.metrics import balanced_report, classification_report
from mlx_eden.eval.suites.validate import extract_code, validate
from mlx_eden.recipe import ChecksSpec, GateSpec, ValidateSuite


def test_script_shares_count_letters_only():
    assert hangul_ratio("한국어 문장 123!") == 1.0
    assert hangul_ratio("한국어 OK") == pytest.approx(3 / 5)
    assert latin_ratio("한국어 OK") == pytest.approx(2 / 5)
    assert hangul_ratio("123") == 0.0 and latin_ratio("café") == 1.0


def test_checks_give_every_reason():
    checks = ChecksSpec(exact=True, contains=["Paris"], regex=r"^The", min_chars=10,
                        max_tokens=3, hangul_ratio_min=0.9, latin_ratio_max=0.01,
                        max_repeat_ngram=1, ngram=2)
    why = failures(checks, "paris", [1, 2, 1, 2], "The capital is Paris.")
    assert len(why) == 8, why
    assert "not the reference" in why[0] and "does not contain 'Paris'" in why[1]
    assert "a 2-gram repeats 2x > 1" in why[-1]
    assert failures(ChecksSpec(exact=True, contains=["Paris"]), " The capital is Paris ",
                    [1, 2], "the capital is paris.") == []
    assert max_ngram_count([7, 7, 7, 7], 2) == 3 and max_ngram_count([1], 2) == 0


def test_code_extraction():
    answer = "Here:\n```python\nx = 1\n```\nand\n```yaml\na: 1\n```"
    assert extract_code(answer, "python") == "x = 1\n"
    assert extract_code(answer, "yaml") == "a: 1\n"
    assert extract_code(answer, "hcl") is None
    assert extract_code(answer, "") == "x = 1\n"  # first fenced block of any language
    assert extract_code("x = 1", "") == "x = 1"


@pytest.mark.parametrize("command,filename,good,bad,first_error", [
    ([sys.executable, "-m", "py_compile", "{file}"], "a.py", "x = 1\n", "def f(:\n",
     "SyntaxError"),
    ([sys.executable, "-c", "import sys, yaml; yaml.safe_load(open(sys.argv[1]))", "{file}"],
     "a.yaml", "a: [1, 2]\n", "a: [1, 2\n", "yaml"),
])
def test_validators_run_in_a_temp_folder(command, filename, good, bad, first_error):
    suite = ValidateSuite(name="v", kind="validate", data="x", command=command,
                          filename=filename, timeout_s=60)
    assert validate(good, suite) is None
    why = validate(bad, suite)
    assert why.startswith("exit 1: ") and first_error in why and "\n" not in why


def test_validator_timeout_and_missing_command():
    slow = ValidateSuite(name="v", kind="validate", data="x", timeout_s=0.5,
                         command=[sys.executable, "-c", "import time; time.sleep(5)"])
    assert validate("", slow) == "timed out after 0.5 s"
    missing = ValidateSuite(name="v", kind="validate", data="x", command=["no-such-tool-x"])
    assert validate("", missing).startswith("cannot run 'no-such-tool-x'")


def test_gates_judge_absolute_and_relative_conditions():
    gates = {"mc.accuracy": GateSpec(max_drop=0.02), "speed.latency_mean_s": GateSpec(max=12),
             "code.success_rate": GateSpec(min=0.98), "speed.tokens_per_s": GateSpec(max_rise=5),
             "other.x": GateSpec(min=1)}
    results = {"mc": {"accuracy": 0.70}, "speed": {"latency_mean_s": 12.0, "tokens_per_s": 30},
               "code": {"success_rate": 0.975}}
    rows = {r["metric"]: r for r in judge(gates, results, {"mc": {"accuracy": 0.73},
                                                            "speed": {"tokens_per_s": 20}})}
    assert "other.x" not in rows  # suite not run: not judged
    assert not rows["mc.accuracy"]["passed"] and "max_drop 0.02" in rows["mc.accuracy"]["reasons"][0]
    assert rows["speed.latency_mean_s"]["passed"]  # equal to the bound passes
    assert not rows["code.success_rate"]["passed"]
    assert not rows["speed.tokens_per_s"]["passed"]
    ok = judge({"mc.accuracy": GateSpec(max_drop=0.02)}, results, {"mc": {"accuracy": 0.715}})
    assert ok[0]["passed"]
    none = judge({"mc.accuracy": GateSpec(max_drop=0.02)}, results, None)
    assert not none[0]["passed"] and "needs a baseline" in none[0]["reasons"][0]


def test_balanced_view_weighs_every_class_the_same():
    # 9 "a" all right, 1 "b" predicted as "a": natural accuracy 0.9, balanced 0.5
    pairs = [("a", "a")] * 9 + [("b", "a")]
    natural = classification_report(pairs, ["a", "b"])
    bal = balanced_report(natural["confusion"], ["a", "b"])
    assert natural["accuracy"] == pytest.approx(0.9)
    assert bal["accuracy"] == pytest.approx(0.5)
    assert bal["per_class"]["a"]["precision"] == pytest.approx(0.5)  # 1 / (1 + 1)
    assert natural["per_class"]["a"]["precision"] == pytest.approx(0.9)
