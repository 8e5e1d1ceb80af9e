"""The attacker suite: views, the three families, linkability, the worst case."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sercloak.attacks import View, check_disjoint, fit_and_score, score
from sercloak.attacks.base import cloak_utterance
from sercloak.attacks.dvector import DvectorAttacker, dvectors, fill_constant_bins
from sercloak.attacks.linkability import equal_error_rate, speaker_eer, trial_pairs
from sercloak.attacks.stats import StatsAttacker, utterance_stats
from sercloak.attacks.suite import AttackConfig, FoldAttacks, clean_scores_complete
from sercloak.cloak import Cloak, CloakConfig
from sercloak.corpora import Utterance
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir
from sercloak.features import FeatureConfig
from sercloak.layout import Setting
from sercloak.prepare import prepare
from sercloak.train import TrainConfig

CFG = FeatureConfig()
N_MELS = CFG.n_mels


def toy_view(speakers: range, per_speaker: int = 6, seed: int = 0) -> View:
    """Utterances whose gender shows as +6 dB in bins 20-39, buried in per-frame noise."""
    rng = np.random.default_rng(seed)
    utts, feats = [], []
    for s in speakers:
        gender = "female" if s % 2 else "male"
        for i in range(per_speaker):
            frames = rng.integers(150, 260)
            x = -40 + 8 * rng.standard_normal((frames, N_MELS)) + rng.normal(0, 3)
            if gender == "female":
                x[:, 20:40] += 6
            utts.append(Utterance(f"toy:{s}_{i}", "toy", f"toy:{s}", gender, "neutral",
                                  Path("none"), frames / 100))
            feats.append(x.astype(np.float32))
    return View(utts, feats, CFG)


def shifting_cloak(shift_db: float = 30.0) -> Cloak:
    """A 'cloak' that raises bins 0-59 by `shift_db` and adds small noise: what it does to
    gender is learnable, but only from cloaked data."""
    cloak = Cloak(CloakConfig(), torch.full((N_MELS,), -40.0), torch.full((N_MELS,), 8.0))
    with torch.no_grad():
        cloak.mu[:60] = shift_db / 8
        cloak.mu[20:40] -= 6 / 8  # female bins now look male to a clean attacker...
        cloak.rho.fill_(-3.0)  # σ ≈ 0.01: small noise
    return cloak.eval()


# -- views -------------------------------------------------------------------------------


def test_view_draws_are_seeded_repeatable_and_fresh_per_copy():
    view = toy_view(range(2), per_speaker=2)
    cloak = shifting_cloak()
    a, b = view.through(cloak, draws=3, seed=7), view.through(cloak, draws=3, seed=7)
    assert len(a.observed()) == 12
    np.testing.assert_array_equal(a.observed()[4], b.observed()[4])
    assert not np.array_equal(a.observed()[0], a.observed()[1])  # two draws of one utterance
    assert a.genders(per_draw=True).tolist() == np.repeat(a.genders(), 3).tolist()
    assert view.observed() is view.clean
    with pytest.raises(ValueError, match="one draw"):
        View(view.utterances, view.clean, CFG, None, draws=2)


def test_cell_cloak_applies_to_utterances_of_any_length():
    cloak = Cloak(CloakConfig(shape="cell"), torch.zeros(N_MELS), torch.ones(N_MELS))
    with torch.no_grad():
        cloak.mu.fill_(1.0)
        cloak.rho.fill_(-20.0)  # no noise
    feats = np.zeros((450, N_MELS), np.float32)
    out = cloak_utterance(cloak, feats, CFG.pad_value)
    assert out.shape == feats.shape and np.allclose(out, 1.0)


def test_subset_keeps_at_most_n_per_speaker_deterministically():
    view = toy_view(range(4), per_speaker=10)
    sub = view.subset(3, seed=1)
    counts = {s: sum(u.speaker == s for u in sub.utterances) for s in view.speakers}
    assert set(counts.values()) == {3}
    assert [u.utt_id for u in sub.utterances] == [u.utt_id for u in view.subset(3, 1).utterances]
    assert view.subset(None) is view


def test_attackers_are_never_fitted_or_selected_on_test_speakers():
    train, valid, test = toy_view(range(0, 6)), toy_view(range(6, 8)), toy_view(range(5, 9))
    with pytest.raises(ValueError, match="test speakers.*toy:5"):
        check_disjoint(test, train, valid)
    with pytest.raises(ValueError, match="test speakers"):
        fit_and_score(StatsAttacker(), train, valid, test)


# -- the stats family ---------------------------------------------------------------------


def test_utterance_stats_shape_and_silence_is_ignored():
    x = np.full((100, N_MELS), -20.0, np.float32)
    x[:, 5] = np.linspace(-30, -10, 100)
    padded = np.concatenate([x, np.full((100, N_MELS), CFG.pad_value, np.float32)])
    stats = utterance_stats(padded)
    assert stats.shape == (5 * N_MELS,)
    assert stats[0] == pytest.approx(-20) and stats[5] == pytest.approx(-20, abs=0.01)
    np.testing.assert_allclose(utterance_stats(padded), utterance_stats(x), atol=1e-4)


def test_stats_attacker_ignorant_and_informed():
    train, valid, test = toy_view(range(0, 12)), toy_view(range(12, 16)), toy_view(range(16, 22))
    ignorant = StatsAttacker().fit(train, valid)
    assert ignorant.fitted_on.isdisjoint(test.speakers)
    assert score(ignorant, test)["overall"]["uar"] >= 90  # the clean cue is easy
    cloak = shifting_cloak()
    cloaked_test = test.through(cloak, 1, seed=3)
    fooled = score(ignorant, cloaked_test)["overall"]["uar"]
    informed = StatsAttacker()
    result = fit_and_score(informed, train.through(cloak, 2, seed=1),
                           valid.through(cloak, 1, seed=2), cloaked_test)
    assert result["overall"]["uar"] >= 90 > fooled  # knowing the cloak undoes it
    assert informed.chosen["smoothing"] in (1, 21) and informed.chosen["valid_uar"] >= 0
    assert set(result["per_corpus"]) == {"toy"}


# -- the dvector family ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Workdir:
    root = tmp_path_factory.mktemp("attacks")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=2)
    prepare({"synthetic": root / "corpus"}, root, loader_options={"synthetic": {"spec": spec}},
            show_progress=False)
    return Workdir.open(root)


def test_fill_constant_bins_interpolates_only_suppressed_bins():
    x = np.random.default_rng(0).normal(size=(30, 8))
    x[:, 3] = 5.0  # suppressed: constant over the utterance
    filled = fill_constant_bins(x)
    np.testing.assert_allclose(filled[:, 3], (x[:, 2] + x[:, 4]) / 2)
    np.testing.assert_array_equal(np.delete(filled, 3, axis=1), np.delete(x, 3, axis=1))


def test_dvector_attacker_ignorant_and_informed_on_synthetic_voices(workdir, encoder):
    suite = FoldAttacks(workdir, 0, AttackConfig(), workdir.root / "x" / "gender.pt",
                        TrainConfig(task="gender"), "paper", encoder)
    train, valid, test = suite.train, suite.valid, suite.scored("test")
    ignorant = DvectorAttacker(encoder, max_per_speaker=3).fit(train, valid)
    assert ignorant.chosen["variant"] == "raw" and ignorant.chosen["train_utterances"] <= 3 * len(
        train.speakers)
    assert ignorant.fitted_on.isdisjoint(test.speakers)
    probs = ignorant.predict_proba(test)
    assert probs.shape == (len(test), 2) and np.allclose(probs.sum(axis=1), 1)
    assert score(ignorant, test)["overall"]["uar"] >= 70  # pitch and formants differ by gender

    cloak = shifting_cloak()
    informed = DvectorAttacker(encoder, ("raw", "smoothed"), max_per_speaker=3)
    result = fit_and_score(informed, train.through(cloak, 2), valid.through(cloak, 1, seed=1),
                           test.through(cloak, 1, seed=2))
    assert informed.chosen["variant"] in ("raw", "smoothed")
    assert 0 <= result["overall"]["uar"] <= 100
    cached = dvectors(test, encoder)
    assert dvectors(test, encoder) is cached and cached.shape == (len(test), 256)


# -- linkability ---------------------------------------------------------


def test_equal_error_rate_on_hand_made_scores():
    assert equal_error_rate([0.9, 0.8, 0.7, 0.4], [0.6, 0.3, 0.2, 0.1]) == pytest.approx(25)
    assert equal_error_rate([0.9, 0.8], [0.1, 0.2]) == 0
    assert equal_error_rate([0.5, 0.5], [0.5, 0.5]) == pytest.approx(50)
    assert equal_error_rate([0.1, 0.2], [0.8, 0.9]) == 100
    with pytest.raises(ValueError):
        equal_error_rate([], [0.1])


def test_trial_pairs_take_every_same_speaker_pair_and_as_many_others():
    speakers = ["a", "a", "a", "b", "b", "c"]
    first, second, same = trial_pairs(speakers, seed=0)
    assert same.sum() == 4 and (~same).sum() == 4  # a: 3 pairs, b: 1 pair
    spk = np.array(speakers)
    assert (spk[first[same]] == spk[second[same]]).all()
    assert (spk[first[~same]] != spk[second[~same]]).all()
    again = trial_pairs(speakers, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip((first, second, same), again, strict=True))


def test_speaker_eer_links_clustered_embeddings_and_not_random_ones():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    speakers = [f"s{i % 4}" for i in range(40)]
    clustered = np.stack([centres[i % 4] + 0.05 * rng.normal(size=16) for i in range(40)])
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    assert speaker_eer(clustered, speakers) == 0
    noise = rng.normal(size=(40, 16))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assert 25 < speaker_eer(noise, speakers) < 75


def test_fold_attacks_score_clean_and_cloaked_without_test_speakers(workdir, encoder):
    cfg = AttackConfig(informed_epochs=1, dvector_max_per_speaker=3, tuned_max_per_speaker=2,
                       tuned_epochs=1)
    gender = TrainConfig(task="gender", max_epochs=1, batch_size=16)
    folder = workdir.root / "suite"
    suite = FoldAttacks(workdir, 0, cfg, folder / "gender.pt", gender, "paper", encoder)
    clean = suite.clean()  # the retrained encoder too: on clean features it reads the same
    assert set(clean["attackers"]) == {"cnn", "stats", "dvector", "dvector_ft"}
    assert clean_scores_complete(clean, cfg, "test")
    assert 0 <= clean["speaker_eer"] <= 100
    assert "dvector_ft" not in suite.clean("primary_valid")["attackers"]  # test speakers only
    before = {**clean, "attackers": {f: a for f, a in clean["attackers"].items()
                                     if f != "dvector_ft"}}  # a file made before it joined
    assert not clean_scores_complete(before, cfg, "test")
    assert clean_scores_complete(before, cfg, "primary_valid")
    toy = Setting(folder, "toy")
    cloaked = suite.protected(toy, cloak=shifting_cloak())
    for family in ("cnn", "stats", "dvector"):
        for version in ("ignorant", "informed"):
            assert 0 <= cloaked["attackers"][family][version]["overall"]["uar"] <= 100
    assert toy.informed("cnn").is_file()
    test = suite.scored("test")
    for family in ("cnn", "stats", "dvector", "dvector_ft"):
        assert suite.ignorant(family).fitted_on.isdisjoint(test.speakers)
    # the fitted informed attackers are kept: scoring another part fits nothing again
    fitted = dict(suite._informed)
    on_valid = suite.protected(toy, "primary_valid", cloak=shifting_cloak())
    assert suite._informed == fitted and on_valid != cloaked
    assert "dvector_ft" in cloaked["attackers"] and "dvector_ft" not in on_valid["attackers"]
    # ...but none may score speakers it was fitted or selected on
    with pytest.raises(ValueError, match="fitted or selected on"):
        suite.protected(toy, "adversary_valid", cloak=shifting_cloak())

    shared = FoldAttacks(workdir, 0, AttackConfig(families=("stats",)), folder / "gender.pt",
                         gender, "shared", None)
    assert shared.train.speakers == set(workdir.folds[0]["adversary_train"]) | set(
        workdir.folds[0]["primary_train"])
    assert shared.valid.speakers == set(workdir.folds[0]["adversary_valid"])
    assert shared.train.speakers.isdisjoint(shared.scored("test").speakers)
    assert "speaker_eer" not in shared.clean()
    with pytest.raises(ValueError, match="unknown attacker families"):
        AttackConfig(families=("cnn", "svm"))
