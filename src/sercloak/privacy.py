"""The privacy figures of a setting: how well a gender attacker does, and against what.

Every attacker that can read what a design sends has been fitted on its own
speakers, then scored twice: on its own validation speakers (`valid`, as the
attacker can measure itself) and on the scored speakers (`predictions`).
From these, per seed and fold:

- **the privacy figure** (`uar_speaker`): the attacker with the best
  validation UAR is chosen (family, version and its settings: `choose_attacker`)
  and its UAR on the scored speakers is the figure. No test label takes part
  in the choice, so the figure is what a real attacker would get;
- **the upper bound** (`upper_bound`): the best test UAR of every attacker,
  chosen with the test labels. With 5-7 test speakers and ten attackers this
  maximum sits well above 50% when nothing leaks; it is kept as a bound;
- **the user-level figure** (`user_level`): the chosen attacker pooling n of a
  test user's utterances (the mean of its per-utterance probabilities) into
  one guess of the user's gender, as a service that links requests to an
  account could; balanced accuracy over users, for n = 1, 5, 20 and all.

Each figure is the mean over seeds and folds, with

- a 95% interval from a speaker bootstrap **stratified by gender** within
  each fold (every resample keeps each fold's number of women and men, so no
  resample holds one gender only); the same draw for every seed and attacker.
  With 3 or 4 speakers of a gender per fold a plain bootstrap is too narrow:
  each gender's resampled recall is stretched by sqrt(n / (n - 1)) about the
  observed one (which makes its variance unbiased), and the interval by
  t(df) / z, df the speakers less one per gender and fold (what a t interval
  would give); checked by `tests/test_privacy.py`'s calibration;
- **a chance band**: the same statistic recomputed, from the same fixed
  predictions and the same choice, after permuting the scored speakers'
  genders within each fold (the counts kept), pooled over folds and seeds:
  the null's mean, its 95th percentile, and the p-value of the figure against
  it. A figure with p >= 0.05 is *indistinguishable from chance*, whatever its
  number.

Every fold is reduced to a per-speaker table (`GenderFold`), so a figure on
any resample or permutation of speakers is a few matrix products.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from .targets import CHANCE_ALPHA, USER_LEVEL_REQUESTS

ROUNDS = 2000  # bootstrap and permutation rounds
SEED = 0
VERSIONS = ("ignorant", "informed")
USER_REQUESTS = (1, 5, USER_LEVEL_REQUESTS, None)  # None: all of a user's requests
USER_DRAWS = 200  # random sets of n requests per user


def attacker_runs(result: dict) -> dict[str, dict]:
    """{"family.version": scored run} of one seed and fold's attackers ("family" alone when
    clean)."""
    out = {}
    for family, entry in result["attackers"].items():
        if "overall" in entry:
            out[family] = entry
        else:  # the versions it has: a sequence attacker is informed only
            out.update({f"{family}.{v}": entry[v] for v in VERSIONS if v in entry})
    return out


def choose_attacker(result: dict) -> str:
    """The attacker of one seed and fold with the best UAR on its own validation speakers
    (speaker-balanced, then pooled; ties go to the first in the suite's order)."""
    runs = attacker_runs(result)
    missing = [name for name, r in runs.items() if "valid" not in r]
    if missing:
        raise ValueError(f"attackers {missing} have no validation score to be chosen by: "
                         f"these scores were made by an older sercloak; run the method again")
    return max(runs, key=lambda n: (runs[n]["valid"]["uar_speaker"], runs[n]["valid"]["uar"]))


def chosen_uar(result: dict, metric: str = "uar_speaker") -> float:
    """The chosen attacker's UAR on the scored speakers of one seed and fold."""
    return attacker_runs(result)[choose_attacker(result)]["overall"][metric]


# -- one fold as a per-speaker table ----------------------------------------------------


class GenderFold:
    """One fold's scored speakers, their genders, and each attacker's predictions as
    per-speaker class fractions: a speaker-balanced UAR on any resample or relabelling of
    the speakers is then two matrix products (`uar`)."""

    def __init__(self, predictions: dict):
        self.speakers, index = np.unique(predictions["speaker"], return_inverse=True)
        self.index = index
        truth = np.asarray(predictions["truth"], dtype=int)
        self.gender = np.full(len(self.speakers), -1)
        self.gender[index] = truth
        if np.any(self.gender[index] != truth):
            raise ValueError("a speaker with utterances of two genders")
        self.counts = np.bincount(index, minlength=len(self.speakers))

    def check(self, predictions: dict) -> None:
        if list(predictions["speaker"]) != self.speakers[self.index].tolist():
            raise ValueError("attackers compared in one fold must score the same utterances")

    def fractions(self, predictions: dict) -> np.ndarray:
        """(speakers, 2): the share of each speaker's utterances guessed as each gender."""
        self.check(predictions)
        table = np.zeros((len(self.speakers), 2))
        np.add.at(table, (self.index, np.asarray(predictions["pred"], dtype=int)), 1.0)
        return table / self.counts[:, None]

    def user_fractions(self, predictions: dict, requests: int | None,
                       rng: np.random.Generator) -> np.ndarray:
        """(speakers, 2): how often a guess from `requests` random utterances of a user (the
        mean of the attacker's probabilities of the second gender) names each gender."""
        self.check(predictions)
        if "score" not in predictions:
            raise ValueError("attacker predictions without probabilities (`score`): made by "
                             "an older sercloak; run the method again")
        score = np.asarray(predictions["score"], dtype=float)
        table = np.zeros((len(self.speakers), 2))
        for s in range(len(self.speakers)):
            mine = score[self.index == s]
            n = len(mine) if requests is None else min(requests, len(mine))
            if n == len(mine):
                second = float(mine.mean() > 0.5)
            else:
                picks = np.argsort(rng.random((USER_DRAWS, len(mine))), axis=1)[:, :n]
                second = float(np.mean(mine[picks].mean(axis=1) > 0.5))
            table[s] = (1.0 - second, second)
        return table

    def bootstrap(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, speakers): how often each speaker is drawn when each gender's speakers
        are resampled with replacement on their own (stratified)."""
        counts = np.zeros((rounds, len(self.speakers)))
        for g in np.unique(self.gender):
            members = np.flatnonzero(self.gender == g)
            draws = members[rng.integers(0, len(members), size=(rounds, len(members)))]
            np.add.at(counts, (np.arange(rounds)[:, None], draws), 1.0)
        return counts

    def permutations(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, speakers): the speakers' genders shuffled among them (counts kept)."""
        return np.stack([rng.permutation(self.gender) for _ in range(rounds)])

    def uar(self, fractions: np.ndarray, counts: np.ndarray, gender: np.ndarray,
            rescaled: bool = False) -> np.ndarray:
        """UAR (%) per row: speakers weighted by `counts` (rows x speakers), each labelled
        `gender` (speakers, or rows x speakers). `rescaled` (bootstrap rows of the true
        genders): each gender's recall moves from the observed one by sqrt(n / (n - 1))
        times the resample's deviation, n its number of speakers, which undoes the plain
        bootstrap's shrinking of the variance by (n - 1) / n: with 3 or 4 speakers of a
        gender per fold it would otherwise cover 95% intervals less than 90% of the time."""
        gender = np.broadcast_to(gender, counts.shape)
        recalls = []
        for g in (0, 1):
            weight = counts * (gender == g)
            total = weight.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(total > 0, (weight @ fractions[:, g]) / total, np.nan)
            n = int(np.sum(self.gender == g))
            if rescaled and n > 1:
                observed = fractions[self.gender == g, g].mean()
                recall = observed + np.sqrt(n / (n - 1)) * (recall - observed)
            recalls.append(recall)
        return 100.0 * np.nanmean(np.stack(recalls), axis=0)


# -- a figure over seeds and folds, with its interval and chance band -------------------


# the attacker tables a figure reads in one seed and fold: (fold, result) -> tables, each
# (speakers, 2); the fold's figure is the best of them on every resample (one table: itself)
Tables = Callable[[GenderFold, dict], list[np.ndarray]]


def summarise_figure(runs: list[list[dict]], tables: Tables, rounds: int = ROUNDS,
                     seed: int = SEED) -> dict:
    """A figure (`tables`) as the mean over seeds and folds, per fold and per seed, with its
    stratified bootstrap interval and its permutation chance band."""
    rng = np.random.default_rng(seed)
    n_folds = len(runs[0])
    per_seed_fold = np.zeros((len(runs), n_folds))
    boot, null, df = np.zeros(rounds), np.zeros(rounds), 0
    for f in range(n_folds):
        results = [seed_runs[f] for seed_runs in runs]
        fold = GenderFold(attacker_runs(results[0])[choose_attacker(results[0])]["predictions"])
        per_seed = [tables(fold, r) for r in results]
        df += sum(max(0, int(np.sum(fold.gender == g)) - 1) for g in (0, 1))
        once = np.ones((1, len(fold.speakers)))
        per_seed_fold[:, f] = [_rows(fold, t, once, fold.gender)[0] for t in per_seed]
        counts = fold.bootstrap(rng, rounds)  # one draw of speakers for every seed
        boot += np.mean([_rows(fold, t, counts, fold.gender, True) for t in per_seed], axis=0)
        permuted = fold.permutations(rng, rounds)
        null += np.mean([_rows(fold, t, np.ones(permuted.shape), permuted) for t in per_seed],
                        axis=0)
    boot, null = boot / n_folds, null / n_folds
    observed = float(per_seed_fold.mean())
    p = (1 + int(np.sum(null >= observed - 1e-9))) / (1 + rounds)
    stretch = stats.t.ppf(0.975, max(1, df)) / stats.norm.ppf(0.975)
    ci95 = np.clip(observed + stretch * (np.percentile(boot, [2.5, 97.5]) - observed), 0, 100)
    return {**_spread(per_seed_fold), "ci95": _round(ci95),
            "chance": {"mean": round(float(null.mean()), 2),
                       "p95": round(float(np.percentile(null, 95)), 2), "p": round(p, 4)},
            "indistinguishable_from_chance": bool(p >= CHANCE_ALPHA)}


def _rows(fold: GenderFold, tables: list[np.ndarray], counts: np.ndarray, gender: np.ndarray,
          rescaled: bool = False) -> np.ndarray:
    """One seed's figure on every row: the best of its attacker tables (one: itself)."""
    return np.max([fold.uar(t, counts, gender, rescaled) for t in tables], axis=0)


def _round(values) -> list[float]:
    return [round(float(v), 2) for v in values]


def _spread(per_seed_fold: np.ndarray) -> dict:
    per_fold = per_seed_fold.mean(axis=0)
    out = {"mean": round(float(per_seed_fold.mean()), 2),
           "std": round(float(np.std(per_fold, ddof=1)), 2) if per_fold.size > 1 else 0.0,
           "folds": _round(per_fold)}
    if per_seed_fold.shape[0] > 1:
        per_seed = per_seed_fold.mean(axis=1)
        out.update(seeds=_round(per_seed), seed_std=round(float(np.std(per_seed, ddof=1)), 2))
    return out


def chosen_tables(fold: GenderFold, result: dict) -> list[np.ndarray]:
    """The attacker chosen on validation."""
    return [fold.fractions(attacker_runs(result)[choose_attacker(result)]["predictions"])]


def every_table(fold: GenderFold, result: dict) -> list[np.ndarray]:
    """Every attacker: the figure is their best (the upper bound)."""
    return [fold.fractions(r["predictions"]) for r in attacker_runs(result).values()]


def user_tables(requests: int | None) -> Tables:
    """The chosen attacker pooling `requests` utterances of each user (None: all)."""
    def tables(fold: GenderFold, result: dict) -> list[np.ndarray]:
        run = attacker_runs(result)[choose_attacker(result)]
        return [fold.user_fractions(run["predictions"], requests, np.random.default_rng(SEED))]
    return tables


def gender_privacy(runs: list[list[dict]], rounds: int = ROUNDS) -> dict:
    """The privacy figures of one setting's runs (`runs[seed][fold]`, each with scored
    `attackers`): the attacker chosen on validation, the upper bound, the user level."""
    names = [[choose_attacker(r) for r in seed_runs] for seed_runs in runs]
    flat = [n for seed_names in names for n in seed_names]
    pooled = [[attacker_runs(r)[n]["overall"]["uar"] for r, n in zip(seed_runs, seed_names,
                                                                     strict=True)]
              for seed_runs, seed_names in zip(runs, names, strict=True)]
    uars = [{n: r["overall"]["uar_speaker"] for n, r in attacker_runs(res).items()}
            for seed_runs in runs for res in seed_runs]
    means = {n: float(np.mean([u[n] for u in uars])) for n in uars[0]}
    # how often validation chose the attacker that was best on test: what the figure
    # gives up against the upper bound, fold by fold
    chosen_best = [u[n] >= max(u.values()) - 1e-9 for u, n in zip(uars, flat, strict=True)]
    return {
        "uar_speaker": summarise_figure(runs, chosen_tables, rounds),
        "uar": _spread(np.asarray(pooled, dtype=float)),
        "attacker": max(dict.fromkeys(flat), key=flat.count),
        "fold_attackers": names,
        "upper_bound": {"uar_speaker": summarise_figure(runs, every_table, rounds),
                        "attacker": max(means, key=means.get),
                        "chosen_best_share": round(float(np.mean(chosen_best)), 3)},
        "user_level": {"all" if n is None else str(n): summarise_figure(runs, user_tables(n),
                                                                        rounds)
                       for n in USER_REQUESTS},
    }
