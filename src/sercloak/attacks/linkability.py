"""Speaker linkability: can two utterances be told to come from the same speaker?

The speaker-verification equal error rate (EER) among test utterances, from
cosine scores between their d-vectors: every same-speaker pair, and as many
different-speaker pairs drawn at random (seeded). 0% means every pair is
linked correctly; 50% means nothing links (chance).
"""

from __future__ import annotations

import numpy as np


def equal_error_rate(target: np.ndarray, nontarget: np.ndarray) -> float:
    """EER in percent: where false rejections of `target` equal false acceptances."""
    target, nontarget = np.asarray(target, float), np.asarray(nontarget, float)
    if target.size == 0 or nontarget.size == 0:
        raise ValueError("an EER needs target and non-target scores")
    thresholds = np.unique(np.concatenate([target, nontarget, [np.inf]]))
    # accept a pair when its score >= threshold
    frr = np.searchsorted(np.sort(target), thresholds, side="left") / target.size
    far = 1.0 - np.searchsorted(np.sort(nontarget), thresholds, side="left") / nontarget.size
    i = int(np.argmin(np.abs(frr - far)))
    return 100.0 * float((frr[i] + far[i]) / 2)


def trial_pairs(speakers: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, same): all same-speaker pairs and as many random different ones."""
    spk = np.asarray(speakers)
    first, second = np.triu_indices(len(spk), k=1)
    same = spk[first] == spk[second]
    first_t, second_t = first[same], second[same]
    rng = np.random.default_rng(seed)
    different = np.flatnonzero(~same)
    if first_t.size == 0 or different.size == 0:
        raise ValueError("speaker linkability needs two utterances of one speaker and two speakers")
    pick = rng.choice(different, size=min(first_t.size, different.size), replace=False)
    first = np.concatenate([first_t, first[pick]])
    second = np.concatenate([second_t, second[pick]])
    return first, second, np.r_[np.ones(first_t.size, bool), np.zeros(pick.size, bool)]


def speaker_eer(embeddings: np.ndarray, speakers: list[str], seed: int = 0) -> float:
    """EER (%) of cosine scoring between unit-norm `embeddings` of utterances."""
    first, second, same = trial_pairs(speakers, seed)
    cosine = np.einsum("ij,ij->i", embeddings[first], embeddings[second])
    return equal_error_rate(cosine[same], cosine[~same])
