"""The privacy figures: the attacker chosen on validation, the stratified bootstrap, the
chance band, the upper bound and the user-level attacker, and a calibration check with
real attackers on features that carry no gender."""

from pathlib import Path

import numpy as np
import pytest

from sercloak.attacks.base import View
from sercloak.attacks.sequence import SequenceBoosting, SequenceLogistic
from sercloak.attacks.suite import attacked
from sercloak.corpora import GENDERS, Utterance
from sercloak.evaluate import summarise
from sercloak.features import FeatureConfig
from sercloak.privacy import GenderFold, choose_attacker, gender_privacy


def scored(speakers, genders, scores, valid=50.0) -> dict:
    """An attacker's scored run: per utterance its speaker, gender and probability of the
    second gender."""
    scores = np.asarray(scores, dtype=float)
    r = summarise(genders, (scores > 0.5).astype(int), GENDERS, ["c"] * len(genders), speakers,
                  np.stack([1 - scores, scores], axis=1))
    return {**r, "valid": {"uar": valid, "uar_speaker": valid}}


def test_the_attacker_is_chosen_by_its_validation_score_alone():
    speakers, genders = ["a", "a", "b", "b"], [0, 0, 1, 1]
    right, wrong = scored(speakers, genders, [0, 0, 1, 1], 60), scored(speakers, genders,
                                                                        [1, 1, 0, 0], 70)
    assert choose_attacker({"attackers": {"x": {"informed": right},
                                          "y": {"informed": wrong}}}) == "y.informed"
    del wrong["valid"]
    with pytest.raises(ValueError, match="no validation score"):
        choose_attacker({"attackers": {"y": {"informed": wrong}}})


def test_resamples_keep_each_gender_and_permutations_keep_the_counts():
    speakers = [s for s in "abcdefg" for _ in range(3)]
    genders = [int(s in "abc") for s in speakers]
    fold = GenderFold(scored(speakers, genders, np.full(len(speakers), 0.3))["predictions"])
    rng = np.random.default_rng(0)
    counts = fold.bootstrap(rng, 500)
    for g, n in ((0, 4), (1, 3)):  # every resample holds 4 women and 3 men, drawn among them
        assert np.all(counts[:, fold.gender == g].sum(axis=1) == n)
    permuted = fold.permutations(rng, 500)
    assert np.all(permuted.sum(axis=1) == 3) and len({tuple(p) for p in permuted}) > 20


def one_fold_runs(rng, speakers_per_fold=7, signal=0.0, attackers=8, seeds=1, folds=5,
                  speaker_noise=1.0):
    """runs[seed][fold] of `attackers` attackers whose scores are speaker-specific noise
    (`speaker_noise`) and utterance noise, plus `signal` towards each speaker's gender."""
    runs = [[None] * folds for _ in range(seeds)]
    for f in range(folds):
        names = [f"f{f}s{i}" for i in range(speakers_per_fold)]
        gender = rng.permutation([0] * 3 + [1] * (speakers_per_fold - 3))
        speakers = [n for n in names for _ in range(10)]
        genders = [int(g) for g in gender for _ in range(10)]
        for s in range(seeds):
            runs[s][f] = {"attackers": {}}
            for a in range(attackers):
                bias = np.repeat(rng.normal(0, speaker_noise, speakers_per_fold), 10)
                logit = bias + signal * (2 * np.asarray(genders) - 1) + rng.normal(0, 1, 70)
                runs[s][f]["attackers"][f"a{a}"] = {"informed": scored(
                    speakers, genders, 1 / (1 + np.exp(-logit)), rng.uniform(40, 60))}
    return runs


def test_upper_bound_of_many_attackers_sits_above_chance_where_the_chosen_one_does_not():
    """Eight attackers that learnt nothing: the best of them on the test speakers reads
    about 60%, and so does its own chance band; the one chosen on validation reads 50."""
    figures = gender_privacy(one_fold_runs(np.random.default_rng(3)), rounds=500)
    upper, chosen = figures["upper_bound"]["uar_speaker"], figures["uar_speaker"]
    assert upper["mean"] > 55 and upper["chance"]["mean"] > 55
    assert upper["ci95"][0] > 50  # an interval that never covers chance: why it is a bound
    assert abs(chosen["chance"]["mean"] - 50) < 2
    assert set(figures["user_level"]) == {"1", "5", "20", "all"}


def test_a_real_signal_is_told_from_chance_and_pooling_requests_strengthens_it():
    figures = gender_privacy(one_fold_runs(np.random.default_rng(4), signal=0.4,
                                           speaker_noise=0.2), rounds=500)
    assert figures["uar_speaker"]["chance"]["p"] < 0.05
    assert not figures["uar_speaker"]["indistinguishable_from_chance"]
    users = figures["user_level"]
    assert users["20"]["mean"] > users["1"]["mean"] + 5


# -- calibration with real attackers ----------------------------------------------------


def features_corpus(rng, n_speakers: int, gender_signal: float):
    """Utterances of speakers whose features are a speaker-specific mean plus noise, and
    whose genders are drawn at random: the features carry gender only through
    `gender_signal` (0: none at all)."""
    genders = rng.permutation(["female", "male"] * (n_speakers // 2) + ["female"]
                              * (n_speakers % 2))
    utterances, sequences = [], []
    for i, gender in enumerate(genders):
        centre = rng.normal(0, 1, 8) + gender_signal * (1 if gender == "male" else -1)
        for k in range(12):
            utterances.append(Utterance(f"c:s{i}/{k}", "c", f"s{i}", str(gender), "neutral",
                                        Path(f"s{i}/{k}.wav"), 1.0))
            sequences.append(centre + rng.normal(0, 1, (20, 8)))
    return utterances, sequences


def fold_views(utterances, sequences, test: set, valid: set):
    cfg = FeatureConfig()

    def view(keep) -> View:
        index = [i for i, u in enumerate(utterances) if keep(u.speaker)]
        return View([utterances[i] for i in index], [sequences[i] for i in index], cfg)

    return (view(lambda s: s not in test | valid), view(lambda s: s in valid),
            view(lambda s: s in test))


def calibration_runs(seed: int, gender_signal: float) -> list[list[dict]]:
    """One seed of 5 folds of 33 speakers (7 test, 4 validation, the rest training), each
    fold attacked by a logistic regression and boosted trees as the experiment does."""
    rng = np.random.default_rng(seed)
    utterances, sequences = features_corpus(rng, 33, gender_signal)
    speakers = sorted({u.speaker for u in utterances}, key=lambda s: int(s[1:]))
    order = rng.permutation(speakers)
    runs = []
    for f in range(5):
        test = set(order[f * 6 : f * 6 + 7])
        valid = set([s for s in order if s not in test][:4])
        train, valid_view, test_view = fold_views(utterances, sequences, test, valid)
        runs.append({"attackers": {
            a.name: {"informed": attacked(a.fit(train, valid_view), test_view, valid_view)}
            for a in (SequenceLogistic(seed=seed),
                      SequenceBoosting(depths=(2,), rates=(0.2,), seed=seed))}})
    return [runs]


def test_calibration_no_gender_in_the_features_reads_as_chance_a_real_one_does_not():
    covered = chance = 0
    for seed in range(10):
        figure = gender_privacy(calibration_runs(seed, 0.0), rounds=1000)["uar_speaker"]
        covered += figure["ci95"][0] <= 50 <= figure["ci95"][1]
        chance += figure["chance"]["p"] >= 0.05
    assert covered >= 9 and chance >= 9, (covered, chance)
    signal = gender_privacy(calibration_runs(0, 0.5), rounds=1000)["uar_speaker"]
    assert signal["chance"]["p"] < 0.05 and signal["mean"] > 60
