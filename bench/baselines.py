"""Table 2 on RAVDESS + nEMO: `prepare` + `baselines` over 5 folds, timed.

    python bench/baselines.py [--model light|reference] [--workdir DIR]

Runs the real commands on ../shared/corpora in a fresh workdir (or DIR, whose
finished models would be reused), prints the Table-2-shaped result, then
times one training step (batch 32) of the reference and the light model in
this same process. Last line: key=value figures.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="light", choices=sorted(PRESETS))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    if not (CORPORA / "ravdess").is_dir():
        sys.exit(f"needs RAVDESS and nEMO in {CORPORA}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sercloak-baselines-"))
    sercloak = [sys.executable, "-m", "sercloak"]
    start = time.perf_counter()
    subprocess.run(sercloak + ["prepare", "--quiet", "--workdir", str(work),
                               "--corpus", f"ravdess={CORPORA / 'ravdess'}",
                               "--corpus", f"nemo={CORPORA / 'nemo'}"], check=True)
    subprocess.run(sercloak + ["baselines", "--quiet", "--workdir", str(work), "--folds",
                               args.folds, "--model", args.model], check=True)
    wall = time.perf_counter() - start
    name = "baselines" if args.model == "light" else f"baselines-{args.model}"
    r = json.loads((work / f"{name}.json").read_text())
    light, reference = step_ms("light"), step_ms("reference")
    print(f"workdir {work}; torch threads={torch.get_num_threads()}", file=sys.stderr)
    print(f"model={args.model} emotion_uar={r['emotion']['uar']['mean']} "
          f"emotion_acc={r['emotion']['acc']['mean']} gender_uar={r['gender']['uar']['mean']} "
          f"gender_acc={r['gender']['acc']['mean']} wall_s={wall:.0f} "
          f"step_ms_light={light:.0f} step_ms_reference={reference:.0f} "
          f"step_speedup={reference / light:.1f}")


if __name__ == "__main__":
    main()
