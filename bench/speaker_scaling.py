"""Is the gender attacker limited by its number of training speakers?

    python bench/speaker_scaling.py [--workdir runs/bench-light] [--folds 0-4]

On a prepared RAVDESS + nEMO workdir, trains the gender model per fold on
(a) the adversary pool's training speakers (the protocol) and (b) those plus
the primary pool's training speakers (about twice as many), selects each on
the adversary validation speakers, and scores both on the test speakers.
A diagnostic only: nothing here selects or tunes the project's models.
Last line: key=value figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from sercloak.checkpoint import load_checkpoint
from sercloak.cli import parse_folds
from sercloak.data import Workdir, build_segments
from sercloak.evaluate import evaluate
from sercloak.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-light"))
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    wd = Workdir.open(args.workdir)
    cfg = TrainConfig(task="gender")
    uars: dict[str, list[float]] = {"adversary": [], "both_pools": []}
    out_dir = Path(tempfile.mkdtemp(prefix="sercloak-scaling-"))
    for fold in parse_folds(args.folds):
        valid = wd.segments(fold, "adversary_valid", "gender", train=False)
        test = wd.segments(fold, "test", "gender", train=False)
        pools = {"adversary": wd.part(fold, "adversary_train"),
                 "both_pools": wd.part(fold, "adversary_train") + wd.part(fold, "primary_train")}
        for name, utts in pools.items():
            train_set = build_segments(utts, wd.features(utts), "gender",
                                       wd.cfg.train_hop_frames, wd.cfg)
            out = out_dir / f"{name}{fold}.pt"
            train(train_set, valid, cfg, wd.cfg, out, show_progress=False)
            model, _ = load_checkpoint(out, wd.cfg)
            uar = evaluate(model, test)["overall"]["uar"]
            uars[name].append(uar)
            print(f"fold {fold} {name}: {len(train_set.speakers)} speakers, test UAR {uar:.1f}")
    print(" ".join(f"gender_uar_{k}={np.mean(v):.1f}" for k, v in uars.items()))


if __name__ == "__main__":
    main()
