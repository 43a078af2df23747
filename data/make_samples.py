"""Generate the bundled sample datasets (deterministic; the JSONL files are committed).

    python data/make_samples.py

Small, templated, learnable data: a tiny model visibly learns it in a minute, which is what the
demo and the tests need. Lengths are spread on purpose (one-line answers next to multi-turn
conversations and code) so that length bucketing and packing have something to do.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent / "samples"

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Egypt": "Cairo", "Norway": "Oslo",
    "Chile": "Santiago", "India": "New Delhi", "Greece": "Athens", "Poland": "Warsaw",
    "Ireland": "Dublin", "Portugal": "Lisbon", "Austria": "Vienna", "Cuba": "Havana",
    "Vietnam": "Hanoi", "Ghana": "Accra", "Sweden": "Stockholm", "Turkey": "Ankara",
}
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
ANIMALS = ["cat", "dog", "fox", "owl", "bear", "wolf", "frog", "hawk", "deer", "seal"]
FUNCS = {
    "square": ("x", "x * x"), "double": ("x", "2 * x"), "negate": ("x", "-x"),
    "is_even": ("n", "n % 2 == 0"), "last": ("xs", "xs[-1]"), "first": ("xs", "xs[0]"),
    "size": ("xs", "len(xs)"), "total": ("xs", "sum(xs)"), "shout": ("s", "s.upper()"),
    "whisper": ("s", "s.lower()"), "reverse": ("s", "s[::-1]"), "halve": ("x", "x / 2"),
}
WORDS = ["apple", "river", "stone", "cloud", "piano", "garden", "rocket", "candle", "mirror",
         "forest", "window", "bridge", "silver", "ocean", "pencil", "ladder"]
POS = ["I love this {}, it works perfectly.", "The {} is excellent and arrived early.",
       "Great {}, would buy again.", "This {} made my day, fantastic quality."]
NEG = ["The {} broke after one day.", "Terrible {}, a waste of money.",
       "I regret buying this {}, it is awful.", "The {} stopped working, very disappointed."]
NEU = ["The {} arrived on Tuesday.", "It is a {} of average size.",
       "The {} comes in a cardboard box.", "I received the {} yesterday."]
PRODUCTS = ["lamp", "kettle", "backpack", "keyboard", "blender", "umbrella", "jacket", "chair"]
SNIPPETS = ["日本語のテキスト", "数据很重要", "한국어 문장", "emoji 🙂🚀", "naïve café", "Ελληνικά"]


def arithmetic(rng):
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice(["plus", "minus", "times"])
    val = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    return f"What is {a} {op} {b}?", f"{a} {op} {b} is {val}."


def capital(rng):
    country = rng.choice(list(CAPITALS))
    return f"What is the capital of {country}?", f"The capital of {country} is {CAPITALS[country]}."


def spell(rng):
    w = rng.choice(WORDS)
    return f"Spell the word {w} backwards.", f"{w} backwards is {w[::-1]}."


def count(rng):
    w = rng.choice(WORDS)
    return f"How many letters are in the word {w}?", f"The word {w} has {len(w)} letters."


def code(rng):
    name = rng.choice(list(FUNCS))
    arg, body = FUNCS[name]
    ask = f"Write a Python function called {name}."
    answer = (f"Here is the function:\n\n```python\ndef {name}({arg}):\n"
              f"    return {body}\n```\n\nIt returns {body} for the given {arg}.")
    return ask, answer


def story(rng):
    animal, color = rng.choice(ANIMALS), rng.choice(COLORS)
    n = rng.randint(2, 6)
    lines = [f"Once there was a {color} {animal}."]
    for i in range(n):
        lines.append(f"On day {i + 1} the {animal} walked to the {rng.choice(WORDS)} "
                     f"and found a {rng.choice(COLORS)} {rng.choice(WORDS)}.")
    lines.append(f"In the end the {color} {animal} went home happy.")
    return f"Tell me a short story about a {color} {animal}.", " ".join(lines)


def translate(rng):
    s = rng.choice(SNIPPETS)
    return f"Repeat this text exactly: {s}", f"{s}"


TASKS = [arithmetic, capital, spell, count, code, story, translate]


def chat_record(rng):
    turns = 1 if rng.random() < 0.6 else rng.randint(2, 3)
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "You are a concise assistant."})
    for _ in range(turns):
        q, a = rng.choice(TASKS)(rng)
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": messages}


def alpaca_record(rng):
    kind = rng.random()
    if kind < 0.4:
        w = rng.choice(WORDS)
        return {"instruction": "Write the given word in capital letters.", "input": w,
                "output": w.upper()}
    q, a = rng.choice(TASKS)(rng)
    return {"instruction": q, "input": "", "output": a}


def classifier_record(rng):
    label = rng.choice(["positive", "negative", "neutral"])
    pool = {"positive": POS, "negative": NEG, "neutral": NEU}[label]
    text = rng.choice(pool).format(rng.choice(PRODUCTS))
    return {"messages": [
        {"role": "system", "content": "Classify the sentiment: positive, negative or neutral."},
        {"role": "user", "content": text},
        {"role": "assistant", "content": label}]}


def style_record(rng, style=None):
    """The two-stage journey's stage 1: the same questions answered tersely (1-2 words) or
    verbosely (20+ words), selected by the record's `style` (data.style_tokens)."""
    country, city = rng.choice(sorted(CAPITALS.items()))
    style = style or rng.choice(["TERSE", "VERBOSE"])
    answer = f"{city}." if style == "TERSE" else (
        f"The capital of {country} is {city}, a large and busy city with a long history, many "
        f"museums, old streets, parks and markets that visitors enjoy all year round.")
    return {"style": style, "messages": [
        {"role": "user", "content": f"What is the capital of {country}?"},
        {"role": "assistant", "content": answer}]}


def iac_record(rng):
    """Stage 2's domain: a Terraform resource per request, with a style like stage 1's."""
    name, env = rng.choice(WORDS), rng.choice(["dev", "staging", "prod"])
    block = (f'```hcl\nresource "aws_s3_bucket" "{name}" {{\n  bucket = "{name}-{env}"\n'
             f'  tags = {{ env = "{env}" }}\n}}\n```')
    style = rng.choice(["TERSE", "VERBOSE"])
    text = block if style == "TERSE" else (
        f"Here is a bucket named {name} for the {env} environment; run terraform plan to "
        f"review it before you apply it.\n\n{block}")
    return {"style": style, "messages": [
        {"role": "user", "content": f"Write Terraform for an S3 bucket {name} in {env}."},
        {"role": "assistant", "content": text}]}


def two_stage_samples():
    """data/samples/style (stage 1, its replay file, eval prompts) and data/samples/iac."""
    rng = random.Random(2020)
    for split, n in (("train", 96), ("valid", 16), ("replay", 24)):
        write(HERE / "style" / f"{split}.jsonl", [style_record(rng) for _ in range(n)])
    write(HERE / "style" / "eval-prompts.jsonl",
          [{"prompt": f"What is the capital of {c}?"} for c in sorted(CAPITALS)[:8]])
    for split, n in (("train", 48), ("valid", 8)):
        write(HERE / "iac" / f"{split}.jsonl", [iac_record(rng) for _ in range(n)])
    write(HERE / "iac" / "eval-prompts.jsonl",
          [{"prompt": f"Write Terraform for an S3 bucket {w} in prod."} for w in WORDS[:6]])


def write(path: Path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    rng = random.Random(1234)
    for name, make, sizes in [("chat", chat_record, (480, 48, 48)),
                              ("alpaca", alpaca_record, (240, 24, 24)),
                              ("classifier", classifier_record, (300, 30, 60))]:
        for split, n in zip(("train", "valid", "test"), sizes, strict=True):
            write(HERE / name / f"{split}.jsonl", [make(rng) for _ in range(n)])
    two_stage_samples()  # its own seed: the files above stay as they were


# The tiny tokenizer's corpus was built from these three folders and is frozen: the tiny models'
# vocabularies (and every stored measurement on them) depend on it. Folders added later (raw/
# holds deliberately malformed lines for the import tests) stay out.
CORPUS_FOLDERS = ("alpaca", "chat", "classifier")


def write_tokenizer_corpus():
    """The text the tiny tokenizer is trained on; it ships inside the package (no network)."""
    lines = set()
    for path in sorted(p for d in CORPUS_FOLDERS for p in (HERE / d).glob("*.jsonl")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(raw)
            for m in rec.get("messages", []):
                lines.add(m["content"])
            for k in ("instruction", "input", "output"):
                if rec.get(k):
                    lines.add(rec[k])
    lines |= set(SNIPPETS)
    out = Path(__file__).parent.parent / "mlx_eden" / "assets" / "tokenizer_corpus.txt"
    out.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
    write_tokenizer_corpus()
