"""Per-user normalisation: leave-one-out statistics within one speaker, and its refusals."""

import numpy as np
import pytest
import torch

from sercloak.checkpoint import CheckpointMismatch, load_checkpoint
from sercloak.cloak import Cloak, CloakConfig
from sercloak.corpora.synthetic import SyntheticSpec
from sercloak.data import Workdir
from sercloak.features import FeatureConfig
from sercloak.normalise import SpeechStats, leave_one_out, speech_frames, standardise
from sercloak.prepare import prepare
from sercloak.train import TrainConfig, train


def utterance(seed, frames=120, level=-40.0):
    rng = np.random.default_rng(seed)
    return (level + 5 * rng.standard_normal((frames, 8))).astype(np.float32)


def test_speech_frames_leave_out_silence():
    feats = utterance(0)
    feats[:20] = -100.0
    mask = speech_frames(feats)
    assert not mask[:20].any() and mask[20:].all()
    stats = SpeechStats.of(feats)
    assert stats.frames == 100
    mean, std = stats.mean_std()
    np.testing.assert_allclose(mean, feats[20:].mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, feats[20:].std(0), rtol=1e-4)


def test_leave_one_out_uses_only_the_speakers_other_utterances():
    speakers = ["a", "a", "a", "b", "b", "c"]
    feats = [utterance(i, level=-40 - 5 * i) for i in range(6)]
    loo = leave_one_out(speakers, [SpeechStats.of(f) for f in feats])
    for i, s in enumerate(speakers):
        others = [f for j, f in enumerate(feats) if speakers[j] == s and j != i] or [feats[i]]
        expected = np.concatenate(others)
        mean, std = loo[i].mean_std()
        np.testing.assert_allclose(mean, expected.mean(0), rtol=1e-5)
        np.testing.assert_allclose(std, expected.std(0), rtol=1e-4)
    # changing another speaker's speech, or the utterance itself, changes nothing
    changed = [f + 30 if s != "a" or i == 0 else f
               for i, (s, f) in enumerate(zip(speakers, feats, strict=True))]
    loo2 = leave_one_out(speakers, [SpeechStats.of(f) for f in changed])
    np.testing.assert_array_equal(loo[0].total, loo2[0].total)
    normalised = standardise(feats[0], loo[0])
    assert normalised.dtype == np.float32 and normalised.shape == feats[0].shape


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """The same small synthetic corpus prepared without and with per-user normalisation."""
    root = tmp_path_factory.mktemp("norm")
    spec = SyntheticSpec(n_speakers=10, utterances_per_emotion=2)
    out = {}
    for norm in ("none", "user"):
        prepare({"synthetic": root / "corpus"}, root / norm, cfg=FeatureConfig(normalise=norm),
                loader_options={"synthetic": {"spec": spec}}, show_progress=False)
        out[norm] = Workdir.open(root / norm)
    return out


def test_workdir_normalises_with_leave_one_out_statistics(workdirs):
    raw, user = workdirs["none"], workdirs["user"]
    assert user.cfg.normalise == "user" and raw.cfg.normalise == "none"
    u = user.utterances[3]
    others = [f for v, f in zip(user.utterances, raw.features(user.utterances), strict=True)
              if v.speaker == u.speaker and v.utt_id != u.utt_id]
    expected = sum((SpeechStats.of(f) for f in others[1:]), SpeechStats.of(others[0]))
    np.testing.assert_allclose(user.features([u])[0], standardise(raw.features([u])[0], expected),
                               atol=1e-5)
    speech = np.concatenate([f[: len(r)][speech_frames(r)] for f, r in  # short ones are padded
                             zip(user.features(user.utterances), raw.features(user.utterances),
                                 strict=True)])
    assert abs(speech.mean()) < 0.5 and 0.5 < speech.std() < 1.5  # roughly standard units


def test_models_and_cloaks_refuse_the_other_normalisation(workdirs, tmp_path):
    raw, user = workdirs["none"], workdirs["user"]
    data = raw.segments(0, "adversary_train", "gender", train=True)
    train(data, raw.segments(0, "adversary_valid", "gender", train=False),
          TrainConfig(task="gender", max_epochs=1, batch_size=16), raw.cfg, tmp_path / "g.pt",
          show_progress=False)
    with pytest.raises(CheckpointMismatch, match="normalise: user != none"):
        load_checkpoint(tmp_path / "g.pt", user.cfg)
    cloak = Cloak(CloakConfig(), torch.zeros(128), torch.ones(128))
    cloak.save(tmp_path / "c.npz", user.cfg)
    with pytest.raises(ValueError, match="normalise: none != user"):
        Cloak.load(tmp_path / "c.npz", raw.cfg)
    Cloak.load(tmp_path / "c.npz", user.cfg)  # the matching one loads


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="unknown normalisation 'speaker'"):
        FeatureConfig(normalise="speaker")
