"""Compare training recipes on VALIDATION speakers only (how the strong recipe was chosen).

    python bench/recipe_search.py --workdir runs/full --task emotion --recipe strong \
        [--set mixup=0 --set lr=3e-4 ...] [--folds 0-4]

Trains the model of `--task` on the primary (or adversary) pool of every fold
with the recipe plus overrides, and prints the validation-speaker UAR after
every epoch, averaged over folds: the curve from which a fixed epoch budget
is read. Test speakers are never loaded. Models go to
``<workdir>/recipe_search/<name>/`` and are reused when run again.
Last line: key=value figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

from sercloak.checkpoint import load_checkpoint
from sercloak.cli import parse_folds
from sercloak.data import Workdir
from sercloak.folds import training_parts
from sercloak.train import TrainConfig, recipe_config, train


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def as_field_type(key: str, value):
    """`value` as the type of TrainConfig's default for `key` (so lr=0 and lr=0.0 are one run)."""
    default = getattr(TrainConfig(), key)
    return type(default)(value) if isinstance(default, (int, float)) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--task", default="emotion", choices=["emotion", "gender"])
    parser.add_argument("--recipe", default="strong")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    overrides = {k: as_field_type(k, parse_value(v))
                 for k, _, v in (s.partition("=") for s in args.set)}
    cfg = recipe_config(args.recipe, args.task, **overrides)
    wd = Workdir.open(args.workdir)
    name = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    train_parts, valid_parts = training_parts("paper", args.task)
    curves, started = [], time.perf_counter()
    for fold in parse_folds(args.folds):
        out = wd.root / "recipe_search" / name / f"fold{fold}-{args.task}.pt"
        if not out.is_file():
            train(wd.segments(fold, train_parts, args.task, train=True),
                  wd.segments(fold, valid_parts, args.task, train=False),
                  cfg, wd.cfg, out, show_progress=False)
        _, ckpt = load_checkpoint(out, wd.cfg)
        curve = [h["valid_uar"] for h in ckpt["metrics"]["history"]]
        curves.append(curve)
        print(f"fold {fold}: " + " ".join(f"{u:.0f}" for u in curve), flush=True)
    length = min(map(len, curves))
    mean_curve = np.mean([c[:length] for c in curves], axis=0)
    print("mean per epoch: " + " ".join(f"{u:.1f}" for u in mean_curve))
    final = [c[-1] for c in curves]
    print(f"{json.dumps(overrides)} -> {name}")
    print(f"recipe={args.recipe} task={args.task} name={name} "
          f"final_valid_uar={np.mean(final):.2f} final_valid_std={np.std(final, ddof=1):.2f} "
          f"best_mean_epoch={int(mean_curve.argmax()) + 1} best_mean_uar={mean_curve.max():.2f} "
          f"wall_s={time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
