"""Speaker-independent folds: test / primary pool / adversary pool.

Per corpus, speakers are dealt into `n_folds` test groups (about 20% each),
genders interleaved so each group holds both where the corpus allows. In
fold k the remaining speakers are split evenly between the primary pool
(trains the emotion model) and the adversary pool (trains the gender
attacker), gender by gender; each pool holds back about `valid_fraction` of
its speakers for validation, never the last speaker of a gender, so that
training always sees both genders. The folds of all corpora are then merged,
so fold k of a multi-corpus run is fold k of every corpus. Everything is
deterministic in `seed`.

A *protocol* says which parts train and validate which models
(`training_parts`); test speakers are never in either:

- ``paper``: the emotion model f_θ (and the cloak, and the service's
  adaptation) trains on the primary pool, the gender model f_g and every
  attacker on the adversary pool (the paper's D_p and D_adv);
- ``shared``: f_θ, the cloak and the adaptation train on both pools'
  training speakers (validated on both pools' validation speakers), and so do
  the attackers: a service trains on every speaker it has, and the strongest
  attacker holds the same data. The attackers select their settings on the
  adversary pool's validation speakers only, because the primary pool's
  (`SELECTION_PART`) are where operating points are chosen and scored.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .corpora import GENDERS, Utterance

PARTS = ("test", "primary_train", "primary_valid", "adversary_train", "adversary_valid")
PROTOCOLS = ("paper", "shared")
DEFAULT_PROTOCOL = "paper"
SELECTION_PART = "primary_valid"  # operating points are chosen on these speakers
_PARTS_OF = {  # protocol -> task -> (training parts, validation parts)
    "paper": {"emotion": (("primary_train",), ("primary_valid",)),
              "gender": (("adversary_train",), ("adversary_valid",))},
    "shared": {"emotion": (("primary_train", "adversary_train"),
                           ("primary_valid", "adversary_valid")),
               "gender": (("primary_train", "adversary_train"), ("adversary_valid",))},
}


# cross-fitting: the two pools' training speakers, each the training set of a model that
# never sees the other's (`crossfit_pools`)
POOLS = {"primary": ("primary_train",), "adversary": ("adversary_train",)}


def crossfit_pools(protocol: str) -> dict[str, tuple[str, ...]]:
    """{pool: training parts} when a model of the emotion side trains on speakers the
    attackers train on (``shared``), else {} (``paper``: the pools are apart already).

    An attacker that reads what a trained model outputs must be fitted on outputs for
    speakers that model never trained on (outputs for a model's own training speakers
    are what it has fitted: an attacker learning from them is weakened). Under
    ``shared`` such designs are cross-fitted: a model trained on one pool produces the
    outputs for the other pool's speakers."""
    emotion, gender = (set(training_parts(protocol, t)[0]) for t in ("emotion", "gender"))
    return dict(POOLS) if emotion & gender else {}


def other_pool(pool: str) -> str:
    return next(p for p in POOLS if p != pool)


def training_parts(protocol: str, task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training parts, validation parts) of the emotion side (f_θ, cloak, adaptation:
    task "emotion") or the gender side (f_g and every attacker: "gender")."""
    if protocol not in _PARTS_OF:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    return _PARTS_OF[protocol][task]


def _split_pools(speakers: dict[str, list[str]], rng: random.Random) -> dict[str, dict]:
    """Split {gender: speakers} evenly into primary and adversary, gender by gender."""
    pools = {"primary": {g: [] for g in GENDERS}, "adversary": {g: [] for g in GENDERS}}
    for g in GENDERS:
        for spk in rng.sample(speakers[g], len(speakers[g])):
            pool = min(pools, key=lambda p: (len(pools[p][g]), sum(map(len, pools[p].values()))))
            pools[pool][g].append(spk)
    return pools


def _hold_out(pool: dict[str, list[str]], valid_fraction: float) -> tuple[list, list]:
    """(train, valid) speakers of one pool; each gender keeps at least one for training."""
    total = sum(map(len, pool.values()))
    n_valid = max(1, round(valid_fraction * total)) if total >= 2 else 0
    queues = {g: list(pool[g]) for g in GENDERS}
    order = sorted(GENDERS, key=lambda g: -len(queues[g]))
    valid: list[str] = []
    while len(valid) < n_valid:
        progressed = False
        for g in order:
            if len(valid) < n_valid and len(queues[g]) > 1:
                valid.append(queues[g].pop())
                progressed = True
        if not progressed:
            break
    return sorted(s for g in GENDERS for s in queues[g]), sorted(valid)


def _corpus_folds(genders: dict[str, str], n_folds: int, seed: int, corpus: str,
                  valid_fraction: float) -> list[dict[str, list[str]]]:
    rng = random.Random(f"{seed}:{corpus}")
    by_gender = {g: sorted(s for s, sg in genders.items() if sg == g) for g in GENDERS}
    dealt = [s for g in GENDERS for s in rng.sample(by_gender[g], len(by_gender[g]))]
    test_groups = [dealt[i::n_folds] for i in range(n_folds)]
    folds = []
    for k, test in enumerate(test_groups):
        rest = {g: [s for s in by_gender[g] if s not in test] for g in GENDERS}
        pools = _split_pools(rest, random.Random(f"{seed}:{corpus}:{k}"))
        p_train, p_valid = _hold_out(pools["primary"], valid_fraction)
        a_train, a_valid = _hold_out(pools["adversary"], valid_fraction)
        folds.append({
            "test": sorted(test), "primary_train": p_train, "primary_valid": p_valid,
            "adversary_train": a_train, "adversary_valid": a_valid,
        })
    return folds


def make_folds(utterances: Iterable[Utterance], n_folds: int = 5, seed: int = 0,
               valid_fraction: float = 0.2) -> list[dict]:
    """A list of `n_folds` dicts naming the speakers of each part (see PARTS)."""
    per_corpus: dict[str, dict[str, str]] = {}
    for u in utterances:
        per_corpus.setdefault(u.corpus, {})[u.speaker] = u.gender
    folds = [{"fold": k, "seed": seed, **{p: [] for p in PARTS}} for k in range(n_folds)]
    for corpus in sorted(per_corpus):
        if len(per_corpus[corpus]) < n_folds:
            raise ValueError(
                f"corpus {corpus!r} has {len(per_corpus[corpus])} speakers; "
                f"{n_folds} speaker-independent folds need at least {n_folds}"
            )
        for k, parts in enumerate(_corpus_folds(per_corpus[corpus], n_folds, seed, corpus,
                                                valid_fraction)):
            for p in PARTS:
                folds[k][p].extend(parts[p])
    return folds


def speaker_part(fold: dict) -> dict[str, str]:
    """speaker -> the part of `fold` it belongs to."""
    return {s: p for p in PARTS for s in fold[p]}
