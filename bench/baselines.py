"""Table 2 on RAVDESS + nEMO: `prepare` + `baselines` over 5 folds, both recipes, timed.

    python bench/baselines.py [--normalise user|none] [--recipes strong,paper]
                              [--model light|reference] [--workdir DIR]

Runs the real commands on ../shared/corpora in a fresh workdir (or DIR, whose
finished models would be reused): `prepare`, then `baselines` with each
recipe, printing the Table-2-shaped result of each with per-corpus figures.
Then times one training step (batch 32) of the reference and the light model
in this same process. Last line: key=value figures, `wall_s_<recipe>` being
the time to train and evaluate both models on every fold with that recipe.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from sercloak.baselines import results_name
from sercloak.models import PRESETS, CnnRnn

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def step_ms(preset: str, batch: int = 32, steps: int = 10) -> float:
    torch.manual_seed(0)
    model = CnnRnn(4, PRESETS[preset]).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 200, 128) * 10, torch.randint(0, 4, (batch,))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1000


def figures(results: dict, recipe: str) -> dict:
    out = {}
    for task in ("emotion", "gender"):
        r = results[task]
        out[f"{task}_uar_{recipe}"] = r["uar"]["mean"]
        out[f"{task}_uar_std_{recipe}"] = r["uar"]["std"]
        for corpus, c in r["per_corpus"].items():
            out[f"{task}_uar_{corpus}_{recipe}"] = c["uar"]["mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="light", choices=sorted(PRESETS))
    parser.add_argument("--normalise", default="user", choices=["user", "none"])
    parser.add_argument("--recipes", default="strong,paper")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    if not (CORPORA / "ravdess").is_dir():
        sys.exit(f"needs RAVDESS and nEMO in {CORPORA}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sercloak-baselines-"))
    sercloak = [sys.executable, "-m", "sercloak"]
    subprocess.run(sercloak + ["prepare", "--quiet", "--workdir", str(work), "--normalise",
                               args.normalise, "--corpus", f"ravdess={CORPORA / 'ravdess'}",
                               "--corpus", f"nemo={CORPORA / 'nemo'}"], check=True)
    line = {"model": args.model, "normalise": args.normalise}
    for recipe in args.recipes.split(","):
        start = time.perf_counter()
        out = subprocess.run(sercloak + ["baselines", "--quiet", "--workdir", str(work), "--folds",
                                         args.folds, "--model", args.model, "--recipe", recipe],
                             check=True, capture_output=True, text=True).stdout
        line[f"wall_s_{recipe}"] = round(time.perf_counter() - start)
        print(f"## recipe {recipe} ({args.normalise} normalisation)\n\n{out}", flush=True)
        file = work / f"{results_name(f'{args.model}-{recipe}')}.json"
        line.update(figures(json.loads(file.read_text()), recipe))
    line["step_ms_light"] = round(step_ms("light"))
    line["step_ms_reference"] = round(step_ms("reference"))
    print(f"workdir {work}; torch threads={torch.get_num_threads()}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
