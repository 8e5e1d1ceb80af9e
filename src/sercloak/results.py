"""Results across seeds and folds: summaries, intervals, the choice of operating points,
and results.json.

Every figure starts as one scored run per seed and fold (`Runs`:
``runs[seed][fold]``, each an `evaluate.summarise` output or a dict of them)
and is summarised by `spread`: the mean over seeds and folds, the per-fold
values (means over seeds) and their standard deviation, and with several
seeds the per-seed values (means over folds) and their standard deviation:
the spread across seeds on its own.

Intervals come from a speaker-level bootstrap (`speaker_bootstrap`): within
each fold the test speakers are resampled with replacement (a speaker drawn
twice counts twice, a speaker is never split), the fold's figure is
recomputed from the utterance predictions every run keeps, averaged over
seeds and folds, and the 2.5th and 97.5th percentiles of `ROUNDS` rounds
(seeded) are the 95% interval. Paired figures (`emotion_drop`: the clean
emotion model minus a protected setting) resample the same speakers for both
sides, so what the two have in common cancels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cloak.training import adversary_accuracies
from .privacy import VERSIONS, chosen_uar, gender_privacy
from .targets import MAX_EMOTION_DROP

Runs = list[list[dict]]  # runs[seed][fold]
ROUNDS = 2000  # bootstrap rounds
BOOTSTRAP_SEED = 0
METRICS = ("acc", "uar", "uar_speaker")
LEAD_METRIC = "uar_speaker"  # what tables lead with and operating points are chosen by
CNN_KEYS = {"gender_ignorant": "ignorant", "gender_informed": "informed"}  # the paper's attacker
RESULTS_FORMAT = "sercloak.results/5"  # the attacker chosen on validation, points per fold,
# the service's answer (`output`), a debiased f_θ and the split network's k grid in each method


def _round(values) -> list[float]:
    return [round(float(v), 2) for v in values]


def spread(values) -> dict:
    """Values per fold (a list) or per seed and fold (a list of lists; NaN = missing) ->
    {"mean", "std", "folds"} (std: sample std over folds of the seed means), plus
    {"seeds", "seed_std"} with several seeds."""
    a = np.asarray(values, dtype=float)
    a = a[None] if a.ndim == 1 else a
    per_fold = np.nanmean(a, axis=0)
    std = float(np.std(per_fold, ddof=1)) if per_fold.size > 1 else 0.0
    out = {"mean": round(float(np.nanmean(a)), 2), "std": round(std, 2),
           "folds": _round(per_fold)}
    if a.shape[0] > 1:
        per_seed = np.nanmean(a, axis=1)
        out.update(seeds=_round(per_seed), seed_std=round(float(np.std(per_seed, ddof=1)), 2))
    return out


def _pick(runs: Runs, get: Callable[[dict], float]) -> list[list[float]]:
    return [[get(r) for r in seed_runs] for seed_runs in runs]


def _by_fold(runs: Runs) -> list[list[dict]]:
    """runs[seed][fold] -> [fold][seed]."""
    return [list(fold_runs) for fold_runs in zip(*runs, strict=True)]


def aggregate(runs: Runs, key: str | None = None) -> dict:
    """Scored runs of one model -> every metric as `spread`, overall and per corpus, the
    summed confusion. `key` selects a sub-dict of each run first."""
    runs = [[r[key] if key else r for r in seed_runs] for seed_runs in runs]
    flat = [r for seed_runs in runs for r in seed_runs]
    metrics = [m for m in METRICS if m in flat[0]["overall"]]
    corpora = sorted({c for r in flat for c in r["per_corpus"]})
    nan = float("nan")
    return {
        **{m: spread(_pick(runs, lambda r, m=m: r["overall"][m])) for m in metrics},
        "per_corpus": {
            c: {m: spread(_pick(runs, lambda r, c=c, m=m: r["per_corpus"][c][m]
                                if c in r["per_corpus"] else nan)) for m in metrics}
            for c in corpora},
        "confusion": np.sum([r["overall"]["confusion"] for r in flat], axis=0).tolist(),
        "labels": flat[0]["labels"],
    }


# -- the speaker-level bootstrap ----------------------------------------------------------


class SpeakerTable:
    """One fold's scored utterances as per-speaker, per-class sums, so that a UAR on any
    resample of speakers is two matrix products."""

    def __init__(self, predictions: dict, n_classes: int, balanced: bool):
        self.speakers = np.asarray(predictions["speaker"])
        self.truth = np.asarray(predictions["truth"], dtype=int)
        names, self.index, counts = np.unique(self.speakers, return_inverse=True,
                                              return_counts=True)
        self.n_speakers, self.n_classes = len(names), n_classes
        self.weights = 1.0 / counts[self.index] if balanced else np.ones(len(self.truth))
        self.total = self._sum(np.ones(len(self.truth), dtype=bool))

    def _sum(self, selected: np.ndarray) -> np.ndarray:
        table = np.zeros((self.n_speakers, self.n_classes))
        np.add.at(table, (self.index, self.truth), self.weights * selected)
        return table

    def hits(self, predictions: dict) -> np.ndarray:
        """Weighted correct predictions per speaker and class of one scored run of the same
        utterances."""
        if (predictions["speaker"] != self.speakers.tolist()
                or predictions["truth"] != self.truth.tolist()):
            raise ValueError("runs compared in one fold must score the same utterances")
        return self._sum(np.asarray(predictions["pred"]) == self.truth)

    def uar(self, counts: np.ndarray, hits: np.ndarray) -> np.ndarray:
        """UAR (%) for every row of `counts` (rounds x speakers: how often each is drawn)."""
        total = counts @ self.total
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(total > 0, (counts @ hits) / total, np.nan)
        return 100.0 * np.nanmean(recall, axis=1)


def speaker_bootstrap(per_fold: list[list[dict[str, dict]]],
                      figure: Callable[[dict[str, np.ndarray]], np.ndarray], metric: str,
                      rounds: int = ROUNDS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """`rounds` bootstrap values of a figure averaged over folds and seeds.

    `per_fold[fold][seed]` maps names to scored runs (each with `predictions`
    and `labels`) of the same utterances; `figure` turns their UARs on one
    resample ({name: (rounds,)}) into the fold's figure (rounds,). Speakers
    are resampled within each fold, the same draw for every seed and name.
    """
    rng = np.random.default_rng(seed)
    total = np.zeros(rounds)
    for fold_runs in per_fold:
        first = next(iter(fold_runs[0].values()))
        table = SpeakerTable(first["predictions"], len(first["labels"]),
                             balanced=metric == "uar_speaker")
        draws = rng.integers(0, table.n_speakers, size=(rounds, table.n_speakers))
        counts = np.zeros((rounds, table.n_speakers))
        np.add.at(counts, (np.arange(rounds)[:, None], draws), 1.0)
        for named in fold_runs:
            uars = {name: table.uar(counts, table.hits(run["predictions"]))
                    for name, run in named.items()}
            total += figure(uars) / len(fold_runs)
    return total / len(per_fold)


def ci95(samples: np.ndarray) -> list[float]:
    return _round(np.percentile(samples, [2.5, 97.5]))


def emotion_drop(clean: Runs, protected: Runs, metric: str = LEAD_METRIC,
                 rounds: int = ROUNDS) -> dict:
    """The clean emotion model's UAR minus the protected setting's, on the same utterances:
    `spread` plus its 95% interval (paired speaker bootstrap)."""
    values = [[c["overall"][metric] - p["overall"][metric] for c, p in zip(cs, ps, strict=True)]
              for cs, ps in zip(clean, protected, strict=True)]
    paired = _by_fold([[{"clean": c, "protected": p} for c, p in zip(cs, ps, strict=True)]
                       for cs, ps in zip(clean, protected, strict=True)])
    samples = speaker_bootstrap(paired, lambda u: u["clean"] - u["protected"], metric, rounds)
    return {**spread(values), "ci95": ci95(samples)}


def with_interval(runs: Runs, metric: str = LEAD_METRIC, rounds: int = ROUNDS) -> dict:
    """One model's UAR: `spread` plus its 95% interval."""
    samples = speaker_bootstrap(_by_fold([[{"m": r} for r in s] for s in runs]),
                                lambda u: u["m"], metric, rounds)
    return {**spread(_pick(runs, lambda r: r["overall"][metric])), "ci95": ci95(samples)}


# -- the attackers ---------------------------------------------------------------------


def aggregate_attackers(runs: Runs, versions: bool) -> dict:
    """{family: aggregate} (clean) or {family: {version: aggregate}} (protected)."""
    families = runs[0][0]["attackers"]
    if not versions:
        return {f: aggregate(_pick(runs, lambda r, f=f: r["attackers"][f])) for f in families}
    return {f: {v: aggregate(_pick(runs, lambda r, f=f, v=v: r["attackers"][f][v]))
                for v in VERSIONS if v in families[f]} for f in families}


def mean_eer(runs: Runs, key: str = "speaker_eer") -> dict | None:
    values = _pick(runs, lambda r: r.get(key))
    if any(v is None for s in values for v in s):
        return None
    return spread(values)


def summarise_attacks(runs: Runs, versions: bool) -> dict:
    entry = {"attackers": aggregate_attackers(runs, versions),
             "gender_privacy": gender_privacy(runs)}
    for key in ("speaker_eer", "speaker_eer_retrained"):
        eer = mean_eer(runs, key)
        if eer is not None:
            entry[key] = eer
    return entry


def summarise_clean(runs: Runs) -> dict:
    """The clean reference on the scored speakers: the emotion model (with its interval),
    every attacker, the privacy figures, the speaker EER."""
    emotion = _pick(runs, lambda r: r["emotion"])
    return {"emotion": {**aggregate(emotion), LEAD_METRIC: with_interval(emotion)},
            **summarise_attacks(runs, versions=False)}


def summarise_setting(runs: Runs, clean: Runs) -> dict:
    """One protected setting's runs -> emotion (and its paired drop from `clean`'s emotion
    model on the same utterances), every attacker, the privacy figures, the EER."""
    emotion, reference = _pick(runs, lambda r: r["emotion"]), _pick(clean, lambda r: r["emotion"])
    entry = {"emotion": aggregate(emotion),
             "emotion_drop": emotion_drop(reference, emotion, LEAD_METRIC),
             "emotion_drop_pooled": emotion_drop(reference, emotion, "uar"),
             **summarise_attacks(runs, versions=True)}
    first = runs[0][0]
    if "cnn" in first["attackers"]:
        entry.update({k: aggregate(_pick(runs, lambda r, v=v: r["attackers"]["cnn"][v]))
                      for k, v in CNN_KEYS.items()})
    if "emotion_unadapted" in first:
        entry["emotion_unadapted"] = aggregate(runs, "emotion_unadapted")
    accuracy = {family: spread(_pick(runs, lambda r, f=family:
                                     adversary_accuracies(r["training"])[f]))
                for family in adversary_accuracies(first.get("training", {}))}
    if accuracy:  # the adversaries' accuracy in their last training epoch: did ψ win?
        entry["adversary_accuracy"] = accuracy
    return entry


# -- choosing operating points ------------------------------------------------------------


def fold_figures(runs: list[dict], clean: list[dict]) -> tuple[float, float]:
    """(paired emotion drop, privacy figure) of one point on one fold: means over seeds of
    the scored runs `runs` against the clean runs `clean` (speaker-balanced)."""
    drop = np.mean([c["emotion"]["overall"][LEAD_METRIC] - r["emotion"]["overall"][LEAD_METRIC]
                    for r, c in zip(runs, clean, strict=True)])
    return float(drop), float(np.mean([chosen_uar(r) for r in runs]))


def choose_per_fold(valid: dict[str, Runs], clean: Runs,
                    max_drop: float = MAX_EMOTION_DROP) -> list[str]:
    """Each fold's operating point among a method's points (`valid`: point name ->
    runs[seed][fold] on that fold's own validation speakers), from that fold's figures
    alone, so that no speaker of another fold's test set (through another fold's models)
    takes part: the point with the lowest privacy figure among those whose emotion drop
    is at most `max_drop` points; when none is, the one that costs least."""
    chosen = []
    for f in range(len(clean[0])):
        figures = {name: fold_figures([s[f] for s in runs], [s[f] for s in clean])
                   for name, runs in valid.items()}
        within = [n for n, (drop, _) in figures.items() if drop <= max_drop]
        chosen.append(min(within, key=lambda n: figures[n][1]) if within
                      else min(figures, key=lambda n: figures[n][0]))
    return chosen


# -- results.json --------------------------------------------------------------------------


def comparable(results: dict) -> tuple:
    """What two results must share for their entries to stand in one table."""
    c = results.get("config", {})
    return (c.get("protocol"), c.get("folds"), c.get("seeds"), c.get("model"), c.get("recipe"),
            c.get("normalise"))


def read_results(file: Path) -> dict:
    """A results.json of this version, or ValueError saying how to make it again (the one
    reader: the report, export, the next run and the benchmarks all come here)."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: run `sercloak experiment` first")
    results = json.loads(file.read_text())
    if results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{file} was written by another version of sercloak (format "
                         f"{results.get('format', 'none')}, not {RESULTS_FORMAT}): move it "
                         f"away and run the methods again (finished models and cloaks are kept)")
    return results


def comparison_file(layout, protocol: str, folds: list[int] | None = None,
                    seeds: list[int] | None = None) -> Path:
    """The results.json of the comparison on `folds` and `seeds` (`Layout.comparison`), or,
    without them, the protocol's only comparison; FileNotFoundError or ValueError saying
    what there is when that is not one."""
    if folds is not None and seeds is not None:
        return layout.results(protocol, folds, seeds)
    found = layout.comparisons(protocol)
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{len(found)} comparisons under {layout.protocol(protocol)} "
                         f"({', '.join(f.parent.name for f in found)}): name one with --folds "
                         f"and --seeds")
    old = layout.unfoldered_results(protocol)
    if old.is_file():
        raise ValueError(f"{old} was written by an older sercloak (before each comparison "
                         f"had a folder): move it away and run the methods again (finished "
                         f"models and cloaks are kept)")
    raise FileNotFoundError(f"no comparison under {layout.protocol(protocol)}: run `sercloak "
                            f"experiment` first")


def merge_results(old: dict | None, new: dict, file: Path | None = None) -> dict:
    """A comparison's results.json after a run on its folds and seeds: the run's entries
    replace every entry of the same methods (a method's figures are its latest run's: a new
    choice of operating point never sits beside an old one); every other method's stay. A
    run with another model, recipe or features is refused (its entries could not stand in
    one table with the old ones)."""
    if old is None:
        return new
    if comparable(old) != comparable(new):
        raise ValueError(f"{file}: its runs used {comparable(old)} (protocol, folds, seeds, "
                         f"model, recipe, normalisation), this run {comparable(new)}: run it "
                         f"in another workdir, or move {file} away")
    methods = {e["method"] for e in new["cloak"]}
    kept = [e for e in old.get("cloak", []) if e["method"] not in methods]
    return {**new, "cloak": kept + new["cloak"],
            "clean_emotion": {**old.get("clean_emotion", {}), **new["clean_emotion"]}}
