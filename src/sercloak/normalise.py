"""Per-user normalisation: each mel bin standardised with its own user's speech statistics.

A device can keep, without labels and without anyone else's data, running
sums over the frames of its user's past utterances; with them it turns each
mel bin into standard units, (dB - user's mean) / user's std, before cloaking.
This removes the user's long-term spectrum: loudness and channel, but also
part of what tells voices (and genders) apart.

Only speech frames count (frames within `SPEECH_RANGE_DB` of the utterance's
loudest frame), so pauses and padding do not drag the mean down.

In evaluation there is no "past": an utterance is normalised with its
speaker's statistics over that speaker's *other* utterances (leave-one-out),
so the scored utterance never normalises itself. A speaker with a single
utterance has nothing else, and that utterance uses its own statistics.
Enabled with `sercloak prepare --normalise user` (`FeatureConfig.normalise`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

SPEECH_RANGE_DB = 40.0
MIN_STD_DB = 1.0  # a (near-)constant bin is divided by 1 dB at least
# Tools built for dB (an attacker's speaker encoder or speech detector) read standard
# units as a typical mel bin of speech in our corpora: 10 dB of spread around -50 dB.
UNIT_DB, MEAN_DB = 10.0, -50.0


def speech_frames(feats: np.ndarray) -> np.ndarray:
    """Boolean (frames,): frames whose mean dB is within SPEECH_RANGE_DB of the loudest."""
    level = feats.mean(axis=1)
    return level >= level.max() - SPEECH_RANGE_DB


@dataclass(frozen=True)
class SpeechStats:
    """Sums over speech frames: enough to add, remove and combine utterances."""

    frames: int
    total: np.ndarray  # (n_mels,) float64: sum of dB
    total_sq: np.ndarray  # (n_mels,) float64: sum of squared dB

    @classmethod
    def of(cls, feats: np.ndarray) -> SpeechStats:
        speech = np.asarray(feats, dtype=np.float64)[speech_frames(feats)]
        return cls(len(speech), speech.sum(axis=0), np.square(speech).sum(axis=0))

    def __add__(self, other: SpeechStats) -> SpeechStats:
        return SpeechStats(self.frames + other.frames, self.total + other.total,
                           self.total_sq + other.total_sq)

    def __sub__(self, other: SpeechStats) -> SpeechStats:
        return SpeechStats(self.frames - other.frames, self.total - other.total,
                           self.total_sq - other.total_sq)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        if self.frames <= 1:
            raise ValueError("statistics of fewer than two speech frames")
        mean = self.total / self.frames
        var = np.maximum(self.total_sq / self.frames - np.square(mean), 0.0)
        return mean, np.maximum(np.sqrt(var), MIN_STD_DB)


def standardise(feats: np.ndarray, stats: SpeechStats) -> np.ndarray:
    """(frames, n_mels) dB -> standard units of the user's speech, float32."""
    mean, std = stats.mean_std()
    return ((np.asarray(feats, dtype=np.float64) - mean) / std).astype(np.float32)


def as_db(feats: np.ndarray, normalise: str) -> np.ndarray:
    """Features as dB: unchanged, or standard units mapped to a typical dB range."""
    return feats if normalise == "none" else UNIT_DB * feats + MEAN_DB


def leave_one_out(speakers: list[str], stats: list[SpeechStats]) -> list[SpeechStats]:
    """For utterance i of speaker s: the sums over s's other utterances (or its own if none)."""
    per_speaker: dict[str, SpeechStats] = {}
    count: dict[str, int] = defaultdict(int)
    for s, st in zip(speakers, stats, strict=True):
        per_speaker[s] = per_speaker[s] + st if s in per_speaker else st
        count[s] += 1
    out = []
    for s, st in zip(speakers, stats, strict=True):
        rest = per_speaker[s] - st
        out.append(rest if count[s] > 1 and rest.frames > 1 else st)
    return out
