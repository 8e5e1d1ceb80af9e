"""Table 2 on RAVDESS + nEMO: `prepare` + `baselines` over 5 folds and the given seeds, timed.

    python bench/baselines.py [--protocol paper|shared] [--seeds 0] [--recipe strong]
                              [--normalise user|none] [--model light|reference] [--workdir DIR]

Runs the real commands on ../shared/corpora in a fresh workdir (or DIR, whose
finished models are reused): `prepare`, then `baselines` under the protocol,
printing its Table 2. Then times one training step (batch 32) of the
reference and the light model in this same process. Last line: key=value
figures (means over seeds and folds; speaker-balanced UAR first), per corpus,
the emotion UAR per seed and its std across seeds, f_θ's speaker-balanced UAR
on the validation speakers where operating points are chosen (to compare
protocols without test speakers), and `wall_s`, the time of the `baselines`
command: training and evaluating both models on every fold and seed (a few
seconds when every model is reused).
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

from sercloak.cli import parse_folds
from sercloak.layout import Layout
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


def figures(results: dict) -> dict:
    out = {}
    for task in ("emotion", "gender"):
        r = results[task]
        for metric in ("uar_speaker", "uar"):
            out[f"{task}_{metric}"] = r[metric]["mean"]
            out[f"{task}_{metric}_std"] = r[metric]["std"]
        lo, hi = r["uar_speaker"]["ci95"]
        out[f"{task}_uar_speaker_ci95"] = f"{lo}..{hi}"
        for corpus, c in r["per_corpus"].items():
            out[f"{task}_uar_speaker_{corpus}"] = c["uar_speaker"]["mean"]
            out[f"{task}_uar_{corpus}"] = c["uar"]["mean"]
        if "seeds" in r["uar_speaker"]:
            out[f"{task}_uar_speaker_per_seed"] = ",".join(map(str, r["uar_speaker"]["seeds"]))
            out[f"{task}_uar_speaker_seed_std"] = r["uar_speaker"]["seed_std"]
    out["valid_emotion_uar_speaker"] = results["valid_emotion"]["uar_speaker"]["mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", default="paper", choices=["paper", "shared"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--recipe", default="strong")
    parser.add_argument("--model", default="light", choices=sorted(PRESETS))
    parser.add_argument("--normalise", default="user", choices=["user", "none"])
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
    start = time.perf_counter()
    out = subprocess.run(sercloak + ["baselines", "--quiet", "--workdir", str(work), "--folds",
                                     args.folds, "--seeds", args.seeds, "--model", args.model,
                                     "--recipe", args.recipe, "--protocol", args.protocol],
                         check=True, capture_output=True, text=True).stdout
    print(f"## {args.protocol} protocol, recipe {args.recipe}, seeds {args.seeds} "
          f"({args.normalise} normalisation)\n\n{out}", flush=True)
    file = Layout(work).baselines(args.protocol, f"{args.model}-{args.recipe}",
                                  parse_folds(args.folds), parse_folds(args.seeds))
    results = json.loads(file.read_text())
    line = {"protocol": args.protocol, "model": args.model, "recipe": args.recipe,
            "normalise": args.normalise, "seeds": args.seeds, **figures(results),
            "wall_s": round(time.perf_counter() - start)}
    line["step_ms_light"] = round(step_ms("light"))
    line["step_ms_reference"] = round(step_ms("reference"))
    print(f"workdir {work}; torch threads={torch.get_num_threads()}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
