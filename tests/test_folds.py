from pathlib import Path

import pytest

from sercloak.corpora import Utterance
from sercloak.folds import PARTS, make_folds, speaker_part


def fake_utterances(corpus: str, n_female: int, n_male: int) -> list[Utterance]:
    utts = []
    for i in range(n_female + n_male):
        gender = "female" if i < n_female else "male"
        for k in range(3):
            utts.append(Utterance(f"{corpus}:{i}_{k}", corpus, f"{corpus}:s{i:02d}", gender,
                                  "neutral", Path(f"/x/{i}_{k}.wav"), 2.0))
    return utts


UTTS = fake_utterances("ravdess", 12, 12) + fake_utterances("nemo", 4, 5) + \
    fake_utterances("cremad", 43, 48)
GENDER = {u.speaker: u.gender for u in UTTS}


def test_no_speaker_crosses_parts_and_every_speaker_is_placed():
    for fold in make_folds(UTTS):
        placed = [s for p in PARTS for s in fold[p]]
        assert len(placed) == len(set(placed)), "a speaker is in two parts"
        assert set(placed) == set(GENDER), "every speaker is in exactly one part"


def test_each_speaker_is_a_test_speaker_exactly_once():
    folds = make_folds(UTTS)
    tested = [s for f in folds for s in f["test"]]
    assert sorted(tested) == sorted(GENDER)
    for f in folds:  # about 20% per corpus
        n = sum(s.startswith("cremad") for s in f["test"])
        assert n in (18, 19)


def test_pools_are_even_and_hold_back_validation():
    for fold in make_folds(UTTS):
        primary = len(fold["primary_train"]) + len(fold["primary_valid"])
        adversary = len(fold["adversary_train"]) + len(fold["adversary_valid"])
        assert abs(primary - adversary) <= 3  # one per corpus at most
        assert fold["primary_valid"] and fold["adversary_valid"]


def test_both_genders_in_every_part_when_the_corpus_allows():
    big = fake_utterances("cremad", 43, 48) + fake_utterances("ravdess", 12, 12)
    for fold in make_folds(big):
        for part in PARTS:
            for corpus in ("cremad", "ravdess"):
                genders = {GENDER[s] for s in fold[part] if s.startswith(corpus)}
                assert genders == {"female", "male"}, (fold["fold"], part, corpus)


def test_small_corpus_keeps_both_genders_in_training():
    small = fake_utterances("nemo", 4, 5)
    for fold in make_folds(small):
        for part in ("primary_train", "adversary_train"):
            assert {GENDER[s] for s in fold[part]} == {"female", "male"}


def test_deterministic_in_seed():
    assert make_folds(UTTS, seed=3) == make_folds(UTTS, seed=3)
    assert make_folds(UTTS, seed=3) != make_folds(UTTS, seed=4)


def test_too_few_speakers_is_an_error():
    with pytest.raises(ValueError, match="at least 5"):
        make_folds(fake_utterances("tiny", 2, 2))


def test_speaker_part_lookup():
    fold = make_folds(UTTS)[0]
    parts = speaker_part(fold)
    assert all(parts[s] == "test" for s in fold["test"])
