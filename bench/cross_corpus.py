"""Cross-corpus evaluation: train on RAVDESS, test on nEMO, and the reverse.

    python bench/cross_corpus.py [--workdir DIR] [--recipe strong] [--normalise user|none]
                                 [--folds 0-4]

Prepares each corpus alone (DIR/ravdess, DIR/nemo), trains both models on
every fold of each (`sercloak baselines`: fold K's primary pool trains the
emotion model, its adversary pool the gender attacker), then scores each
fold's models on every utterance of the other corpus (`sercloak evaluate
--on`). Prints, per direction, UAR as mean ± std over the folds' models,
beside the in-corpus test-speaker UAR. Last line: key=value figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sercloak.cli import parse_folds
from sercloak.layout import Layout

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
NAMES = ("ravdess", "nemo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--recipe", default="strong")
    parser.add_argument("--normalise", default="user", choices=["user", "none"])
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    if not all((CORPORA / n).is_dir() for n in NAMES):
        sys.exit(f"needs RAVDESS and nEMO in {CORPORA}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sercloak-cross-"))
    sercloak = [sys.executable, "-m", "sercloak"]
    started = time.perf_counter()
    in_corpus = {}
    for name in NAMES:
        subprocess.run(sercloak + ["prepare", "--quiet", "--workdir", str(work / name),
                                   "--normalise", args.normalise,
                                   "--corpus", f"{name}={CORPORA / name}"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(sercloak + ["baselines", "--quiet", "--workdir", str(work / name),
                                   "--folds", args.folds, "--recipe", args.recipe], check=True,
                       stdout=subprocess.DEVNULL)
        in_corpus[name] = json.loads(
            Layout(work / name).baselines("paper", f"light-{args.recipe}",
                                          parse_folds(args.folds), [0]).read_text())
    line = {"recipe": args.recipe, "normalise": args.normalise}
    for source, target in (NAMES, NAMES[::-1]):
        uars = {"emotion": [], "gender": []}
        for fold in parse_folds(args.folds):
            out = work / f"{source}-on-{target}-fold{fold}.json"
            subprocess.run(sercloak + ["evaluate", "--workdir", str(work / source), "--fold",
                                       str(fold), "--recipe", args.recipe, "--on",
                                       str(work / target), "--out", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
            result = json.loads(out.read_text())
            for task in uars:
                uars[task].append(result[task]["overall"]["uar"])
        print(f"trained on {source} -> tested on every {target} utterance "
              f"({len(uars['emotion'])} folds' models):")
        for task, values in uars.items():
            own = in_corpus[source][task]["uar"]
            print(f"  {task:8s} UAR {np.mean(values):5.1f} ± {np.std(values, ddof=1):4.1f}   "
                  f"(in-corpus test speakers: {own['mean']:.1f} ± {own['std']:.1f})")
            line[f"{task}_uar_{source}_to_{target}"] = round(float(np.mean(values)), 2)
            line[f"{task}_uar_{source}_in_corpus"] = own["mean"]
    line["wall_s"] = round(time.perf_counter() - started)
    print(f"workdir {work}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
