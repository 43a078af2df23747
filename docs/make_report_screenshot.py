"""Make docs/report.png: train two tiny runs (two learning rates), write their comparison report
with `eden-mlx report`, open it in headless Chromium and screenshot it.

    python docs/make_report_screenshot.py [--steps 40] [--keep DIR]

Needs Chromium (Debian: apt-get install -y chromium). Nothing is downloaded: the tiny model is
built locally and the data is the bundled sample set.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDEN = [sys.executable, "-m", "mlx_eden.cli"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def eden(*args: str) -> None:
    subprocess.run([*EDEN, *args], cwd=ROOT, check=True)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("Chromium not found; on Debian: apt-get install -y chromium")


def screenshot(page: Path, png: Path, size: str = "1280,1600") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--screenshot={png}", f"--window-size={size}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="keep the runs and the report here")
    parser.add_argument("--runs", nargs="+", help="report these run directories; train none")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="eden-report-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = args.runs or train_two_runs(work, args.steps)
    page = work / "report.html"
    eden("report", *runs, "--output", str(page))
    screenshot(page, args.output)
    print(f"wrote {args.output} from {page}")


def train_two_runs(work: Path, steps: int) -> list[str]:
    model = work / "tiny-qwen2"
    if not model.exists():
        eden("tiny", str(model))
    runs = []
    for lr in ("2e-3", "5e-4"):
        run = work / f"lr-{lr}"
        shutil.rmtree(run, ignore_errors=True)
        eden("train", "recipes/tiny-demo.yaml", "--no-dashboard", "--backend", "mlx",
             "--output", str(run), "--set", f"model.path={model}",
             "--set", "data.max_seq_length=128", "--set", "train.batch_size=2",
             "--set", f"train.max_steps={steps}", "--set", f"train.learning_rate={lr}",
             "--set", "train.eval_every=10", "--set", "train.eval_batches=4",
             "--set", "train.save_every=0")
        runs.append(str(run))
    return runs


if __name__ == "__main__":
    main()
