"""A calibration for Table 2: logistic regression on utterance-level log-mel statistics.

    python bench/linear_probe.py --workdir runs/full [--folds 0-4] [--cloak-dir DIR]

On a prepared workdir, describes each utterance by the mean and standard
deviation of every mel bin over its frames, and fits a logistic regression
per fold on the same speakers as the CNN+RNN (emotion: primary training
pool; gender: adversary training pool), scored by UAR on the test speakers.
Not a model sercloak uses: it tells whether a weak result comes from the
network or from the data split.

With --cloak-dir (a finished experiment's `cloaks/<model>-<recipe>/<mel-...>` folder),
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
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sercloak.cli import parse_folds
from sercloak.cloak import Cloak
from sercloak.corpora import EMOTIONS, GENDERS
from sercloak.data import Workdir
from sercloak.evaluate import scores

POOLS = {"emotion": "primary_train", "gender": "adversary_train"}
CLASSES = {"emotion": EMOTIONS, "gender": GENDERS}


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


def labels(part: list, task: str) -> np.ndarray:
    return np.array([CLASSES[task].index(getattr(u, task)) for u in part])


def probe() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def uar(model, x: np.ndarray, y: np.ndarray, task: str) -> float:
    """The project's UAR (evaluate.scores) of the probe's predictions."""
    return scores(y, model.predict(x), len(CLASSES[task]))["uar"]


def attack_cloaks(wd: Workdir, fold: int, cloak_dir: Path, clean_probe) -> dict[str, float]:
    """Gender UAR of the ignorant (`clean_probe`) and an informed probe for each cloak of a fold."""
    train, test = wd.part(fold, "adversary_train"), wd.part(fold, "test")
    y_train, y_test = labels(train, "gender"), labels(test, "gender")
    result = {}
    for file in sorted((cloak_dir / f"fold{fold}").glob("*.npz")):
        cloak = Cloak.load(file, wd.cfg).eval()
        if cloak.cfg.shape != "mel":
            raise SystemExit(f"{file}: only per-mel-bin cloaks apply to whole utterances")
        torch.manual_seed(1000 + fold)
        x_train, x_test = describe(wd, train, cloak), describe(wd, test, cloak)
        informed = probe().fit(x_train, y_train)
        result[f"{file.stem}_ignorant"] = uar(clean_probe, x_test, y_test, "gender")
        result[f"{file.stem}_informed"] = uar(informed, x_test, y_test, "gender")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--folds", default="0-4")
    parser.add_argument("--cloak-dir", type=Path, help="also attack the cloaks in this folder")
    args = parser.parse_args()
    wd = Workdir.open(args.workdir)
    uars: dict[str, list[float]] = {}
    for fold in parse_folds(args.folds):
        test = wd.part(fold, "test")
        x_test = describe(wd, test)
        probes = {}
        for task, pool in POOLS.items():
            train = wd.part(fold, pool)
            probes[task] = probe().fit(describe(wd, train), labels(train, task))
            score = uar(probes[task], x_test, labels(test, task), task)
            uars.setdefault(f"{task}_uar", []).append(score)
            print(f"fold {fold} {task}: {len(train)} training utterances, test UAR {score:.1f}")
        if args.cloak_dir:
            for key, score in attack_cloaks(wd, fold, args.cloak_dir, probes["gender"]).items():
                uars.setdefault(f"gender_uar_{key}", []).append(score)
    figures = {k: round(float(np.mean(v)), 1) for k, v in uars.items()}
    if args.cloak_dir:
        print("\n| cloak | gender UAR, ignorant probe | gender UAR, informed probe |")
        print("|---|---|---|")
        for key in sorted(k.removesuffix("_informed") for k in figures if k.endswith("_informed")):
            print(f"| {key.removeprefix('gender_uar_')} | {figures[key + '_ignorant']:.1f} | "
                  f"{figures[key + '_informed']:.1f} |")
    shown = {k: v for k, v in figures.items()
             if k in ("emotion_uar", "gender_uar") or k.startswith("gender_uar_adversarial_sr60")}
    print(" ".join(f"{k}={v}" for k, v in shown.items()))

if __name__ == "__main__":
    main()
