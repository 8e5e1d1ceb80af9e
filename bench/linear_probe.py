"""A calibration for Table 2: logistic regression on utterance-level log-mel statistics.

    python bench/linear_probe.py --workdir runs/full [--folds 0-4]

On a prepared workdir, describes each utterance by the mean and standard
deviation of every mel bin over its frames, and fits a logistic regression
per fold on the same speakers as the CNN+RNN (emotion: primary training
pool; gender: adversary training pool), scored by UAR on the test speakers.
Not a model sercloak uses: it tells whether a weak result comes from the
network or from the data split. Last line: key=value figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sercloak.cli import parse_folds
from sercloak.data import Workdir

POOLS = {"emotion": "primary_train", "gender": "adversary_train"}


def describe(wd: Workdir, part: list) -> np.ndarray:
    feats = [wd.cache.get(u.utt_id) for u in part]
    return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in feats])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--folds", default="0-4")
    args = parser.parse_args()
    wd = Workdir.open(args.workdir)
    uars: dict[str, list[float]] = {task: [] for task in POOLS}
    for fold in parse_folds(args.folds):
        test = wd.part(fold, "test")
        for task, pool in POOLS.items():
            train = wd.part(fold, pool)
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            model.fit(describe(wd, train), [getattr(u, task) for u in train])
            predicted = model.predict(describe(wd, test))
            uar = 100 * balanced_accuracy_score([getattr(u, task) for u in test], predicted)
            uars[task].append(uar)
            print(f"fold {fold} {task}: {len(train)} training utterances, test UAR {uar:.1f}")
    print(" ".join(f"{task}_uar={np.mean(v):.1f}" for task, v in uars.items()))


if __name__ == "__main__":
    main()
