"""Integration tests on the real RAVDESS and nEMO in ../shared/corpora."""

import json
from collections import Counter

import pytest

from conftest import real_corpus
from sercloak.corpora import load_corpus
from sercloak.folds import PARTS
from sercloak.prepare import prepare

pytestmark = pytest.mark.corpora


def counts(listing):
    return Counter((u.emotion, u.gender) for u in listing.utterances)


def test_ravdess_counts():
    listing = load_corpus("ravdess", real_corpus("ravdess"))
    assert counts(listing) == {
        ("neutral", "female"): 48, ("neutral", "male"): 48,
        ("happy", "female"): 96, ("happy", "male"): 96,
        ("sad", "female"): 96, ("sad", "male"): 96,
        ("angry", "female"): 96, ("angry", "male"): 96,
    }
    assert listing.excluded == {"calm": 192, "fearful": 192, "disgust": 192, "surprised": 192}
    assert not listing.skipped
    speakers = {u.speaker: u.gender for u in listing.utterances}
    assert len(speakers) == 24
    assert speakers["ravdess:01"] == "male" and speakers["ravdess:24"] == "female"
    assert all(u.path.suffix == ".flac" for u in listing.utterances)


def test_ravdess_calm_as_neutral():
    listing = load_corpus("ravdess", real_corpus("ravdess"), calm_as_neutral=True)
    assert Counter(u.emotion for u in listing.utterances)["neutral"] == 96 + 192
    assert "calm" not in listing.excluded


def test_nemo_counts():
    listing = load_corpus("nemo", real_corpus("nemo"))
    assert counts(listing) == {
        ("neutral", "female"): 360, ("neutral", "male"): 449,
        ("happy", "female"): 360, ("happy", "male"): 389,
        ("sad", "female"): 360, ("sad", "male"): 409,
        ("angry", "female"): 360, ("angry", "male"): 389,
    }
    speakers = {u.speaker: u.gender for u in listing.utterances}
    # the real data.tsv pads speaker_id with spaces; the loader strips them
    assert sorted(speakers) == [f"nemo:{s}" for s in
                                ("EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0")]
    assert Counter(speakers.values()) == {"female": 4, "male": 5}
    assert not listing.skipped


def test_prepare_both_corpora(tmp_path):
    corpora = {"ravdess": real_corpus("ravdess"), "nemo": real_corpus("nemo")}
    result = prepare(corpora, tmp_path, show_progress=False)
    assert len(result.utterances) == 672 + 3076
    summary = json.loads((tmp_path / "summary.json").read_text())["corpus_summary"]
    assert summary["ravdess"]["utterances"] == {"neutral": 96, "happy": 192, "sad": 192,
                                                "angry": 192}
    assert summary["nemo"]["speakers"] == {"female": 4, "male": 5}
    speakers = {u.speaker for u in result.utterances}
    for fold in result.folds:
        placed = [s for p in PARTS for s in fold[p]]
        assert sorted(placed) == sorted(speakers)
        for part in PARTS:  # both corpora appear in every part
            assert {s.split(":")[0] for s in fold[part]} <= {"ravdess", "nemo"}
            assert any(s.startswith("ravdess") for s in fold[part])


def test_dvector_attacker_and_linkability_on_real_ravdess_actors():
    """Real speech through our features: d-vectors carry gender and speaker identity."""
    from sercloak.attacks import View, score
    from sercloak.attacks.dvector import DvectorAttacker, dvectors
    from sercloak.attacks.linkability import speaker_eer
    from sercloak.attacks.speaker_encoder import EncoderUnavailable, SpeakerEncoder
    from sercloak.audio import load_audio
    from sercloak.features import FeatureConfig, LogMel

    listing = load_corpus("ravdess", real_corpus("ravdess"))
    try:
        encoder = SpeakerEncoder.load()
    except EncoderUnavailable as err:
        pytest.skip(f"speaker encoder weights not installed: {err}")
    cfg = FeatureConfig()

    def view(actors: set[str]) -> View:
        utts = [u for u in listing.utterances if u.speaker in actors and u.emotion == "angry"]
        return View(utts, [LogMel(cfg)(load_audio(u.path)) for u in utts], cfg)

    train = view({f"ravdess:{a:02d}" for a in range(1, 9)})
    valid = view({"ravdess:09", "ravdess:10"})
    test = view({f"ravdess:{a:02d}" for a in range(11, 17)})
    attacker = DvectorAttacker(encoder).fit(train, valid)
    assert score(attacker, test)["overall"]["uar"] >= 90  # 99-100 measured (attackers.md)
    eer = speaker_eer(dvectors(test, encoder), [u.speaker for u in test.utterances])
    assert eer < 30  # six actors, 16 utterances each: clearly linkable (50 = chance)
