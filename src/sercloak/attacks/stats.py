"""`stats`: a logistic regression on utterance-level statistics of every mel bin.

Each utterance (each cloaked copy of it) is described by the mean, standard
deviation and 10th / 50th / 90th percentiles of every mel bin over its
speech frames (frames within 40 dB of its loud frames, so padding and long
silences do not count), optionally after a moving average over time, which
undoes noise drawn independently per frame. A standardised logistic
regression (balanced classes) reads them; its regularisation C and the
smoothing are chosen by UAR on the validation speakers. This is the
attacker that long-term spectral traits such as gender cannot escape.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.ndimage import uniform_filter1d
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..corpora import GENDERS
from ..evaluate import scores
from ..normalise import as_db
from .base import View, mean_over_draws

PERCENTILES = (10, 50, 90)


def loud_frames(db: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Frames whose mean level is within `floor_db` of the utterance's loud frames."""
    level = db.mean(axis=1)
    keep = level > np.percentile(level, 95) - floor_db
    return db[keep] if keep.sum() >= 2 else db


def utterance_stats(db: np.ndarray, smoothing: int = 1) -> np.ndarray:
    """(frames, mels) -> (mels * 5,): mean, std and percentiles of each bin."""
    if smoothing > 1:
        db = uniform_filter1d(db, smoothing, axis=0, mode="nearest")
    frames = loud_frames(db)
    return np.concatenate([frames.mean(0), frames.std(0),
                           *np.percentile(frames, PERCENTILES, axis=0)]).astype(np.float32)


def view_stats(view: View, smoothing: int) -> np.ndarray:
    """(n_observed, mels * 5), computed once per view."""
    return view.derived(("stats", smoothing), lambda: np.stack(
        [utterance_stats(as_db(f, view.cfg.normalise), smoothing) for f in view.observed()]))


def logistic(c: float, seed: int = 0):
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=c, class_weight="balanced", max_iter=3000, random_state=seed))


def select_logistic(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                    y_valid: np.ndarray, cs: tuple[float, ...], seed: int = 0) -> tuple:
    """The logistic regression with the best validation UAR: (model, C, validation UAR).

    The Cs are fitted from the smallest up, each starting from the previous solution (a
    regularisation path: the same optima, found in a fraction of the iterations).
    """
    model, best = logistic(min(cs), seed), None
    model.set_params(logisticregression__warm_start=True)
    for c in sorted(cs):
        model.set_params(logisticregression__C=c).fit(x_train, y_train)
        uar = scores(y_valid, model.predict(x_valid), len(GENDERS))["uar"]
        if best is None or uar > best[2]:
            best = (copy.deepcopy(model), c, uar)
    return best


class StatsAttacker:
    name = "stats"

    def __init__(self, smoothings: tuple[int, ...] = (1, 21),
                 cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0), seed: int = 0):
        self.smoothings, self.cs, self.seed = smoothings, cs, seed

    def fit(self, train: View, valid: View) -> StatsAttacker:
        best = None
        for smoothing in self.smoothings:
            model, c, uar = select_logistic(
                view_stats(train, smoothing), train.genders(per_draw=True),
                view_stats(valid, smoothing), valid.genders(per_draw=True), self.cs, self.seed)
            if best is None or uar > best[3]:
                best = (model, smoothing, c, uar)
        self.model, self.smoothing = best[0], best[1]
        self.chosen = {"smoothing": best[1], "C": best[2], "valid_uar": round(best[3], 2)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return mean_over_draws(self.model.predict_proba(view_stats(test, self.smoothing)),
                               test.draws)
