"""Speaker-balanced UAR, the speaker-level bootstrap, seeds, choice and merging of results."""

from pathlib import Path

import numpy as np
import pytest

from sercloak.evaluate import scores, summarise
from sercloak.results import (
    RESULTS_FORMAT,
    SpeakerTable,
    choose_per_fold,
    emotion_drop,
    merge_results,
    read_results,
    speaker_bootstrap,
    spread,
    summarise_setting,
)


def run(speakers, truth, pred, labels=("a", "b")) -> dict:
    """A scored run as `evaluate.summarise` makes it (one corpus)."""
    return summarise(truth, pred, labels, ["c"] * len(truth), speakers)


def test_speaker_balanced_uar_weighs_every_speaker_the_same():
    # speaker A: 8 utterances of class 0, all right; speaker B: 2 of class 0, both wrong;
    # both speakers have 2 utterances of class 1, all right
    speakers = ["A"] * 10 + ["B"] * 4
    truth = [0] * 8 + [1] * 2 + [0] * 2 + [1] * 2
    pred = [0] * 8 + [1] * 2 + [1] * 2 + [1] * 2
    s = scores(truth, pred, 2, speakers)
    # pooled: class 0 recall 8/10, class 1 recall 4/4 -> 90
    assert s["uar"] == pytest.approx(90.0)
    # balanced: class 0 recall (8/10) / (8/10 + 2/4) = 0.8 / 1.3; class 1 recall 1
    assert s["uar_speaker"] == pytest.approx(100 * (0.8 / 1.3 + 1) / 2)
    # with one utterance per speaker both are the same
    one = scores([0, 1, 0], [0, 1, 1], 2, ["x", "y", "z"])
    assert one["uar"] == pytest.approx(one["uar_speaker"]) == pytest.approx(75.0)


def test_summarise_keeps_predictions_and_per_corpus_balanced_uar():
    result = summarise([0, 1, 1], [0, 0, 1], ("a", "b"), ["p", "p", "q"], ["s1", "s1", "s2"])
    assert result["predictions"] == {"speaker": ["s1", "s1", "s2"], "truth": [0, 1, 1],
                                     "pred": [0, 0, 1]}
    assert "uar_speaker" in result["per_corpus"]["p"] and result["per_corpus"]["q"]["uar"] == 100


def test_speaker_table_reproduces_the_direct_uar_when_every_speaker_is_drawn_once():
    rng = np.random.default_rng(1)
    speakers = rng.choice(list("ABCDEFG"), 200).tolist()
    truth, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    result = run(speakers, truth, pred, labels=tuple("wxyz"))
    for metric, balanced in (("uar", False), ("uar_speaker", True)):
        table = SpeakerTable(result["predictions"], 4, balanced)
        once = np.ones((1, table.n_speakers))
        direct = table.uar(once, table.hits(result["predictions"]))[0]
        assert direct == pytest.approx(result["overall"][metric])


def test_bootstrap_resamples_whole_speakers():
    """Speaker A is always right, B always wrong: a resample holds A twice (100), B twice
    (0) or both (50), never anything in between, as an utterance-level resample would."""
    speakers = ["A"] * 20 + ["B"] * 20
    truth = [0, 1] * 20
    pred = truth[:20] + [1 - t for t in truth[20:]]
    per_fold = [[{"m": run(speakers, truth, pred)}]]
    samples = speaker_bootstrap(per_fold, lambda u: u["m"], "uar_speaker", rounds=1000)
    assert set(np.round(samples, 6)) == {0.0, 50.0, 100.0}
    assert np.mean(samples == 50.0) == pytest.approx(0.5, abs=0.06)
    # seeded: the same rounds again, other rounds with another seed
    again = speaker_bootstrap(per_fold, lambda u: u["m"], "uar_speaker", rounds=1000)
    other = speaker_bootstrap(per_fold, lambda u: u["m"], "uar_speaker", rounds=1000, seed=5)
    assert np.array_equal(samples, again) and not np.array_equal(samples, other)


def test_paired_drop_interval_is_narrow_when_the_setting_costs_the_same_everywhere():
    rng = np.random.default_rng(0)
    folds_clean, folds_protected = [], []
    for _ in range(3):
        speakers = np.repeat([f"s{i}" for i in range(8)], 20).tolist()
        truth = rng.integers(0, 2, 160)
        # speakers differ a lot in how well they are recognised...
        right = rng.random(160) < np.repeat(rng.uniform(0.3, 1.0, 8), 20)
        clean_pred = np.where(right, truth, 1 - truth)
        # ...and the setting flips the same 10% of every speaker's right answers
        flip = right & (np.arange(160) % 20 < 2)
        protected_pred = np.where(flip, 1 - truth, clean_pred)
        folds_clean.append(run(speakers, truth, clean_pred))
        folds_protected.append(run(speakers, truth, protected_pred))
    drop = emotion_drop([folds_clean], [folds_protected], "uar_speaker")
    lo, hi = drop["ci95"]
    assert lo <= drop["mean"] <= hi and len(drop["folds"]) == 3
    # the unpaired interval of the clean UAR alone is far wider than the paired one
    alone = speaker_bootstrap([[{"m": r}] for r in folds_clean], lambda u: u["m"],
                              "uar_speaker")
    assert hi - lo < 0.5 * (np.percentile(alone, 97.5) - np.percentile(alone, 2.5))


def test_spread_over_seeds_and_folds():
    stat = spread([[50.0, 60.0], [54.0, 64.0]])
    assert stat["mean"] == 57.0 and stat["folds"] == [52.0, 62.0]
    assert stat["std"] == pytest.approx(np.std([52, 62], ddof=1), abs=0.01)
    assert stat["seeds"] == [55.0, 59.0]
    assert stat["seed_std"] == pytest.approx(np.std([55, 59], ddof=1), abs=0.01)
    assert "seeds" not in spread([50.0, 60.0])


def attacker_run(speakers, truth, pred, valid=50.0):
    r = {**run(speakers, truth, pred, labels=("female", "male")),
         "valid": {"uar": valid, "uar_speaker": valid}}
    r["predictions"]["score"] = [float(p) for p in pred]
    return {"ignorant": r, "informed": r}


def test_privacy_figure_and_setting_summary_over_seeds():
    speakers = ["A", "A", "B", "B"]
    truth = [0, 0, 1, 1]
    good, bad = [0, 0, 1, 1], [1, 0, 1, 0]
    runs, clean = [], []
    for seed in range(2):
        seed_runs, seed_clean = [], []
        for _fold in range(2):
            emotion = run(speakers, [0, 1, 0, 1], [0, 1, 0, 1] if seed else [0, 1, 1, 1])
            seed_clean.append({"emotion": run(speakers, [0, 1, 0, 1], [0, 1, 0, 1])})
            seed_runs.append({"emotion": emotion, "attackers": {
                "stats": attacker_run(speakers, truth, good, valid=60.0),
                "cnn": attacker_run(speakers, truth, bad, valid=90.0)}})
        runs.append(seed_runs)
        clean.append(seed_clean)
    entry = summarise_setting(runs, clean)
    privacy = entry["gender_privacy"]
    # the attacker that does best on its validation speakers is chosen, not the best on test
    assert privacy["attacker"].startswith("cnn") and privacy["uar_speaker"]["mean"] == 50
    assert privacy["upper_bound"]["uar_speaker"]["mean"] == 100
    assert privacy["upper_bound"]["attacker"].startswith("stats")
    assert privacy["upper_bound"]["chosen_best_share"] == 0  # cnn never was the best on test
    # seed 0 loses one of four utterances, seed 1 none
    assert entry["emotion_drop"]["seeds"] == [25.0, 0.0]
    assert entry["emotion_drop"]["mean"] == 12.5
    assert entry["gender_informed"] == entry["attackers"]["cnn"]["informed"]
    assert entry["emotion"]["uar"]["seeds"] == [75.0, 100.0]


def test_choose_per_fold_takes_the_most_private_point_within_the_budget_on_each_fold():
    speakers = ["A", "A", "B", "B"]

    def scored(emotion_right: int, gender_right: int) -> dict:
        """A run whose emotion model gets `emotion_right` of 4 and attacker `gender_right`."""
        emotion = [0, 1, 0, 1]
        gender = [0, 0, 1, 1]
        return {"emotion": run(speakers, emotion, [e if i < emotion_right else 1 - e
                                                   for i, e in enumerate(emotion)]),
                "attackers": {"stats": attacker_run(speakers, gender, [
                    g if i < gender_right else 1 - g for i, g in enumerate(gender)])}}

    clean = [[{"emotion": run(speakers, [0, 1, 0, 1], [0, 1, 0, 1])}] * 2]
    valid = {  # per point, runs[seed][fold]: fold 0 and fold 1 disagree
        "sr0": [[scored(4, 4), scored(4, 4)]],
        "sr60": [[scored(4, 2), scored(2, 2)]],  # more private; on fold 1 it costs 50 points
        "sr80": [[scored(1, 0), scored(1, 0)]],  # most private, too dear everywhere
    }
    assert choose_per_fold(valid, clean) == ["sr60", "sr0"]
    # fold 0's choice reads fold 0 alone: whatever another fold's speakers say, it stands
    other = {name: [[runs[0][0], scored(0, 0)]] for name, runs in valid.items()}
    assert choose_per_fold(other, clean)[0] == "sr60"
    # no point within the budget: the cheapest
    assert choose_per_fold({"sr80": valid["sr80"], "sr60": valid["sr60"]}, clean) == [
        "sr60", "sr60"]


def test_merge_keeps_other_methods_and_refuses_an_incomparable_run():
    def results(protocol, methods, seeds=(0,)):
        return {"format": RESULTS_FORMAT,
                "config": {"protocol": protocol, "folds": [0, 1], "seeds": list(seeds),
                           "model": "light", "recipe": "strong", "normalise": "user"},
                "cloak": [{"method": m, "setting": "sr0"} for m in methods],
                "clean_emotion": {}}
    merged = merge_results(results("paper", ["a", "b"]), results("paper", ["b", "c"]))
    assert [e["method"] for e in merged["cloak"]] == ["a", "b", "c"]
    # a method run again replaces all its entries: another chosen point never sits beside
    rechosen = results("paper", ["b"])
    rechosen["cloak"][0]["setting"] = "sr60"
    merged = merge_results(merged, rechosen)
    assert [(e["method"], e["setting"]) for e in merged["cloak"]] == [
        ("a", "sr0"), ("c", "sr0"), ("b", "sr60")]
    # runs that could not stand in one table are refused, never merged or dropped (runs on
    # other folds or seeds go to comparisons of their own: `Layout.comparison`)
    for other in (results("shared", ["c"]), results("paper", ["c"], (0, 1))):
        with pytest.raises(ValueError, match="run it in another workdir"):
            merge_results(results("paper", ["a"]), other, Path("results.json"))
    # a results.json of another format is refused where every reader reads it
    import json
    import tempfile

    old = results("paper", ["a"])
    del old["format"]
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "results.json"
        file.write_text(json.dumps(old))
        with pytest.raises(ValueError, match="another version of sercloak"):
            read_results(file)


def test_a_comparison_is_found_by_its_folds_and_seeds_or_as_the_only_one(tmp_path):
    from sercloak.layout import Layout
    from sercloak.results import comparison_file

    layout = Layout(tmp_path)
    with pytest.raises(FileNotFoundError, match="run `sercloak experiment` first"):
        comparison_file(layout, "paper")
    old = layout.unfoldered_results("paper")  # where results.json lay before
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    with pytest.raises(ValueError, match="before each comparison had a folder"):
        comparison_file(layout, "paper")
    first = layout.results("paper", [0, 1, 2, 3, 4], [0])
    assert first.parent.name == "folds0-4-seeds0"
    first.parent.mkdir()
    first.write_text("{}")
    assert comparison_file(layout, "paper") == first
    second = layout.results("paper", [0, 1], [0, 1, 2])
    second.parent.mkdir()
    second.write_text("{}")
    with pytest.raises(ValueError, match="2 comparisons .*folds0-1-seeds0-2, folds0-4-seeds0"):
        comparison_file(layout, "paper")
    assert comparison_file(layout, "paper", [0, 1], [0, 1, 2]) == second
    assert layout.kind_of(second) == "comparison"
