"""A calibration for Table 2: logistic regression on utterance-level log-mel statistics.

    python bench/linear_probe.py --workdir runs/full [--folds 0-4] [--cloak-dir DIR]

On a prepared workdir, describes each utterance by the mean and standard
deviation of every mel bin over its frames, and fits a logistic regression
per fold on the same speakers as the CNN+RNN (emotion: primary training
pool; gender: adversary training pool), scored by UAR on the test speakers.
Not a model sercloak uses: it tells whether a weak result comes from the
network or from the data split.

With --cloak-dir (a finished experiment's `cloaks/<preset>/<mel-...>` folder),
the probe also attacks every cloak there: *ignorant* (fitted on clean
adversary-pool utterances) and *informed* (fitted on cloaked ones, one noise
draw each), both scored on cloaked test utterances. Last line: key=value
figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sercloak.cli import parse_folds
from sercloak.cloak import Cloak
from sercloak.data import Workdir

POOLS = {"emotion": "primary_train", "gender": "adversary_train"}


def describe(wd: Workdir, part: list, cloak: Cloak | None = None) -> np.ndarray:
    """Per utterance: mean and std of every mel bin over its frames (cloaked if given)."""
    rows = []
    for u in part:
        f = np.array(wd.cache.get(u.utt_id), dtype=np.float32)  # a writable copy of the mmap
        if cloak is not None:  # a per-mel-bin cloak applies to any number of frames
            with torch.no_grad():
                f = cloak(torch.from_numpy(f)[None])[0].numpy()
        rows.append(np.concatenate([f.mean(0), f.std(0)]))
    return np.stack(rows)


def probe() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def uar(truth: list, predicted) -> float:
    return 100 * balanced_accuracy_score(truth, predicted)


def attack_cloaks(wd: Workdir, folds: list[int], cloak_dir: Path) -> dict[str, float]:
    """Gender UAR of the ignorant and informed probe per cloak setting, mean over folds."""
    scores: dict[str, list[float]] = {}
    for fold in folds:
        train, test = wd.part(fold, "adversary_train"), wd.part(fold, "test")
        y_train, y_test = [u.gender for u in train], [u.gender for u in test]
        clean = probe().fit(describe(wd, train), y_train)
        for file in sorted((cloak_dir / f"fold{fold}").glob("*.npz")):
            cloak = Cloak.load(file, wd.cfg).eval()
            if cloak.cfg.shape != "mel":
                raise SystemExit(f"{file}: only per-mel-bin cloaks apply to whole utterances")
            torch.manual_seed(1000 + fold)
            x_train, x_test = describe(wd, train, cloak), describe(wd, test, cloak)
            informed = probe().fit(x_train, y_train)
            for kind, model in (("ignorant", clean), ("informed", informed)):
                key = f"{file.stem}_{kind}"
                scores.setdefault(key, []).append(uar(y_test, model.predict(x_test)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--folds", default="0-4")
    parser.add_argument("--cloak-dir", type=Path, help="also attack the cloaks in this folder")
    args = parser.parse_args()
    wd = Workdir.open(args.workdir)
    uars: dict[str, list[float]] = {task: [] for task in POOLS}
    for fold in parse_folds(args.folds):
        test = wd.part(fold, "test")
        for task, pool in POOLS.items():
            train = wd.part(fold, pool)
            model = probe().fit(describe(wd, train), [getattr(u, task) for u in train])
            score = uar([getattr(u, task) for u in test], model.predict(describe(wd, test)))
            uars[task].append(score)
            print(f"fold {fold} {task}: {len(train)} training utterances, test UAR {score:.1f}")
    figures = {f"{task}_uar": round(float(np.mean(v)), 1) for task, v in uars.items()}
    if args.cloak_dir:
        cloaked = attack_cloaks(wd, parse_folds(args.folds), args.cloak_dir)
        print("\n| cloak | gender UAR, ignorant probe | gender UAR, informed probe |")
        print("|---|---|---|")
        for name in sorted({k.rsplit("_", 1)[0] for k in cloaked}):
            print(f"| {name} | {cloaked[name + '_ignorant']:.1f} | "
                  f"{cloaked[name + '_informed']:.1f} |")
        figures.update({f"gender_uar_{k}": round(v, 1) for k, v in cloaked.items()
                        if k.startswith("adversarial_sr60")})
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
