"""`dvector`: a logistic regression on d-vectors of a pretrained speaker encoder.

The encoder (`speaker_encoder.py`) was trained on thousands of speakers, so
its d-vectors separate gender from a handful of training speakers where a
network trained from scratch cannot. Each utterance's d-vector is computed
from its features ("raw"), or, for the informed attacker, optionally after
undoing what a cloak does ("smoothed"): suppressed mel bins (constant over
the utterance) are filled from their neighbouring bins and the dB features
are averaged over 21 frames, which cancels noise drawn independently per
frame. Which of the two, and the logistic regression's C, is chosen by UAR
on the validation speakers.

Embedding is the costly part (about 6 ms per 1.6 s partial on 2 cores), so
the training and validation views keep at most `max_per_speaker`
utterances of each speaker (gender is a trait of the speaker: a few dozen
utterances each tell a regression all they can); test views are never cut.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .base import View, mean_over_draws
from .speaker_encoder import MelConverter, SpeakerEncoder, embed_utterances
from .stats import select_logistic

VARIANTS = ("raw", "smoothed")


def fill_constant_bins(db: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Replace mel bins that never change (suppressed) by interpolating their neighbours."""
    varying = db.std(axis=0) > tolerance
    if varying.all() or not varying.any():
        return db
    bins = np.arange(db.shape[1])
    known, missing = bins[varying], bins[~varying]
    # each missing bin between its nearest varying neighbours (np.interp's rule, for every
    # frame at once: the edge value beyond the first and last varying bin)
    after = np.searchsorted(known, missing)
    left = known[np.clip(after - 1, 0, len(known) - 1)]
    right = known[np.clip(after, 0, len(known) - 1)]
    span = np.where(right > left, right - left, 1)
    weight = np.where(right > left, (missing - left) / span, 0.0)
    filled = db.copy()
    filled[:, missing] = db[:, left] * (1 - weight) + db[:, right] * weight
    return filled


def undo_cloak(db: np.ndarray, smoothing: int = 21) -> np.ndarray:
    return uniform_filter1d(fill_constant_bins(db), smoothing, axis=0, mode="nearest")


def dvectors(view: View, encoder: SpeakerEncoder, variant: str = "raw",
             smoothing: int = 21) -> np.ndarray:
    """Unit-norm d-vectors (n_observed, 256) of a view, computed once per view and variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown d-vector variant {variant!r} (known: {VARIANTS})")

    def make() -> np.ndarray:
        feats = view.observed()
        if variant == "smoothed":
            feats = [undo_cloak(f, smoothing) for f in feats]
        return embed_utterances(encoder, MelConverter(view.cfg), feats)

    return view.derived(("dvector", variant, smoothing), make)


class DvectorAttacker:
    name = "dvector"

    def __init__(self, encoder: SpeakerEncoder, variants: tuple[str, ...] = ("raw",),
                 cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), max_per_speaker: int | None = 60,
                 smoothing: int = 21, seed: int = 0):
        self.encoder, self.variants, self.cs = encoder, variants, cs
        self.max_per_speaker, self.smoothing, self.seed = max_per_speaker, smoothing, seed

    def fit(self, train: View, valid: View) -> DvectorAttacker:
        train = train.subset(self.max_per_speaker, self.seed)
        valid = valid.subset(self.max_per_speaker, self.seed)
        best = None
        for variant in self.variants:
            model, c, uar = select_logistic(
                dvectors(train, self.encoder, variant, self.smoothing),
                train.genders(per_draw=True),
                dvectors(valid, self.encoder, variant, self.smoothing),
                valid.genders(per_draw=True), self.cs, self.seed)
            if best is None or uar > best[3]:
                best = (model, variant, c, uar)
        self.model, self.variant = best[0], best[1]
        self.chosen = {"variant": best[1], "C": best[2], "valid_uar": round(best[3], 2),
                       "train_utterances": len(train)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        x = dvectors(test, self.encoder, self.variant, self.smoothing)
        return mean_over_draws(self.model.predict_proba(x), test.draws)
