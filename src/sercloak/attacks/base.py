"""What a gender attacker sees, and how it is fitted and scored.

Every attacker family (`cnn`, `stats`, `dvector`) has the same two verbs:

    attacker.fit(train: View, valid: View) -> attacker
    attacker.predict_proba(test: View) -> (n_utterances, 2) gender probabilities

A `View` is a set of utterances as the attacker sees them: clean, or through
a cloak with `draws` seeded noise draws per utterance. Each family exists in
two versions:

- **ignorant**: fitted on clean views of its pool, selected on clean
  validation speakers (an attacker that does not know the protection);
- **informed**: fitted on cloaked views of its pool (several noise draws per
  utterance) and selected on cloaked validation speakers (the VoicePrivacy
  Challenge's semi-informed attacker, which retrains on protected data).

Both versions are scored on cloaked test utterances (one seeded draw).
`fit_and_score` refuses any training or validation view that shares a
speaker with the test view, so no attacker is ever fitted or selected on
test speakers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..cloak import Cloak
from ..corpora import GENDERS, Utterance
from ..data import SegmentSet, build_segments
from ..evaluate import summarise
from ..features import FeatureConfig


class Attacker(Protocol):
    name: str

    def fit(self, train: View, valid: View) -> Attacker: ...

    def predict_proba(self, test: View) -> np.ndarray: ...


@torch.no_grad()
def cloak_utterance(cloak: Cloak, feats: np.ndarray, pad_value: float) -> np.ndarray:
    """A whole utterance through the cloak (a 'cell' cloak window by window)."""
    x = torch.from_numpy(np.array(feats, dtype=np.float32)).to(cloak.mu.device)  # a copy
    if cloak.cfg.shape == "mel":  # the same noise law for every frame: any length at once
        return cloak(x[None])[0].cpu().numpy()
    window = cloak.mu.shape[0]
    n = x.shape[0]
    padded = torch.full((-(-n // window) * window, x.shape[1]), pad_value, device=x.device)
    padded[:n] = x
    return cloak(padded.view(-1, window, x.shape[1])).reshape(-1, x.shape[1])[:n].cpu().numpy()


@dataclass(eq=False)
class View:
    """Utterances as an attacker sees them: clean features, or cloaked ones.

    `observed()` gives `draws` cloaked copies of every utterance (utterance
    by utterance: copy d of utterance i at i * draws + d), drawn from a
    generator seeded with `seed`, so a view is reproducible. Whatever an
    attacker derives from a view (statistics, d-vectors) is kept in `derived`
    and computed once.
    """

    utterances: list[Utterance]
    clean: list[np.ndarray]  # (frames, mels) dB features, as the models see them
    cfg: FeatureConfig
    cloak: Cloak | None = None
    draws: int = 1
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if len(self.utterances) != len(self.clean):
            raise ValueError("a view needs one feature array per utterance")
        if self.cloak is None and self.draws != 1:
            raise ValueError("a clean view has exactly one draw per utterance")

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def speakers(self) -> set[str]:
        return {u.speaker for u in self.utterances}

    def through(self, cloak: Cloak | None, draws: int = 1, seed: int = 0) -> View:
        """The same utterances seen through another cloak (None: clean)."""
        view = View(self.utterances, self.clean, self.cfg, cloak, draws if cloak else 1, seed)
        view._cache.update({k: v for k, v in self._cache.items() if k[0] == "segments"})
        return view

    def subset(self, max_per_speaker: int | None, seed: int = 0) -> View:
        """At most `max_per_speaker` utterances of each speaker, chosen at random (seeded)."""
        if max_per_speaker is None:
            return self
        rng = np.random.default_rng(seed)
        by_speaker: dict[str, list[int]] = {}
        for i, u in enumerate(self.utterances):
            by_speaker.setdefault(u.speaker, []).append(i)
        keep = sorted(i for idx in by_speaker.values()
                      for i in (rng.permutation(idx)[:max_per_speaker] if len(idx) >
                                max_per_speaker else idx))
        return View([self.utterances[i] for i in keep], [self.clean[i] for i in keep], self.cfg,
                    self.cloak, self.draws, self.seed)

    def genders(self, per_draw: bool = False) -> np.ndarray:
        """Gender class index per utterance (or per observed copy)."""
        y = np.array([GENDERS.index(u.gender) for u in self.utterances])
        return np.repeat(y, self.draws) if per_draw else y

    def observed(self) -> list[np.ndarray]:
        """What the attacker sees: the clean features, or `draws` cloaked copies of each."""
        if self.cloak is None:
            return self.clean
        return self.derived("observed", self._draw)

    def _draw(self) -> list[np.ndarray]:
        with torch.random.fork_rng(devices=[]):  # leave everyone else's random stream alone
            torch.manual_seed(self.seed)
            return [cloak_utterance(self.cloak, f, self.cfg.pad_value)
                    for f in self.clean for _ in range(self.draws)]

    def segments(self, hop: int) -> SegmentSet:
        """Clean 2 s gender segments (a network attacker cloaks them batch by batch)."""
        return self.derived(("segments", hop), lambda: build_segments(
            self.utterances, self.clean, "gender", hop, self.cfg))

    def derived(self, key, make: Callable[[], object]):
        """`make()`, computed once per view and key."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def mean_over_draws(probs: np.ndarray, draws: int) -> np.ndarray:
    """(n_utterances * draws, k) -> (n_utterances, k)."""
    return probs.reshape(-1, draws, probs.shape[1]).mean(axis=1)


def check_disjoint(test: View, *pools: View) -> None:
    """Refuse attacker pools that share a speaker with the test view."""
    shared = set().union(*(p.speakers for p in pools)) & test.speakers
    if shared:
        raise ValueError(f"an attacker would be fitted or selected on test speakers: "
                         f"{sorted(shared)}")


def score(attacker: Attacker, test: View) -> dict:
    """Accuracy, UARs and confusion of an attacker's gender guesses, overall and per corpus,
    with every utterance's guess and probability (`evaluate.summarise`)."""
    probs = attacker.predict_proba(test)
    return summarise(test.genders(), probs.argmax(axis=1), GENDERS,
                     [u.corpus for u in test.utterances], [u.speaker for u in test.utterances],
                     probs)


def fit_and_score(attacker: Attacker, train: View, valid: View, test: View) -> dict:
    check_disjoint(test, train, valid)
    return score(attacker.fit(train, valid), test)
