import librosa
import numpy as np
import pytest

from sercloak.features import (
    FeatureConfig,
    LogMel,
    cut_segments,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from sercloak.segments import segment_starts

CFG = FeatureConfig()


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    """The reference: librosa with the paper's parameters (same as bench/features.py)."""
    power = librosa.feature.melspectrogram(
        y=wave, sr=16000, n_fft=800, hop_length=160, win_length=800, window="hamming",
        center=True, pad_mode="constant", n_mels=128, power=2.0,
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T


def test_paper_settings_are_the_defaults():
    assert (CFG.sample_rate, CFG.win_length, CFG.hop_length, CFG.n_fft, CFG.n_mels) == (
        16000, 800, 160, 800, 128)
    assert CFG.window == "hamming"
    assert (CFG.segment_frames, CFG.train_hop_frames, CFG.test_hop_frames) == (200, 100, 50)


def test_mel_scale_round_trip_and_knee():
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-10, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: linear up to 1 kHz = 15 mel


def test_filterbank_matches_librosa():
    ours = mel_filterbank(CFG)
    ref = librosa.filters.mel(sr=16000, n_fft=800, n_mels=128)
    assert ours.shape == (128, 401)
    np.testing.assert_allclose(ours, ref, atol=1e-7)
    assert (ours.sum(axis=1) > 0).all(), "no empty mel filter"


def test_logmel_matches_librosa_within_001_db():
    rng = np.random.default_rng(0)
    t = np.arange(int(1.37 * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.3 * t)) + 0.02 * rng.standard_normal(t.size))
    wave = wave.astype(np.float32)
    ours, ref = LogMel(CFG)(wave), librosa_logmel(wave)
    assert ours.shape == ref.shape == (1 + wave.size // 160, 128)
    assert np.abs(ours - ref).max() < 0.01


def test_logmel_floor_and_dtype():
    feats = LogMel(CFG)(np.zeros(16000, np.float32))
    assert feats.dtype == np.float32
    assert np.allclose(feats, CFG.pad_value)  # digital silence sits at the -100 dB floor


@pytest.mark.parametrize("n_frames, hop, expected", [
    (50, 100, [0]),                       # short: one padded window
    (200, 100, [0]),                      # exactly one window
    (300, 100, [0, 100]),                 # windows tile it exactly
    (350, 100, [0, 100, 150]),            # tail covered by a window flush with the end
    (350, 50, [0, 50, 100, 150]),
])
def test_segment_starts(n_frames, hop, expected):
    assert segment_starts(n_frames, hop, 200) == expected


def test_cut_segments_pads_short_utterances_with_floor():
    feats = np.arange(50 * 128, dtype=np.float32).reshape(50, 128)
    segs = cut_segments(feats, [0], CFG)
    assert segs.shape == (1, 200, 128)
    np.testing.assert_array_equal(segs[0, :50], feats)
    assert (segs[0, 50:] == CFG.pad_value).all()


def test_fingerprint_tracks_settings():
    other = FeatureConfig(n_mels=64)
    assert CFG.fingerprint() != other.fingerprint()
    assert CFG.fingerprint() == FeatureConfig.from_dict(CFG.to_dict()).fingerprint()
    assert "n_mels: 128 != 64" in CFG.describe_mismatch(other)
    older = {k: v for k, v in CFG.to_dict().items() if k != "amin"}  # a file from an older version
    assert CFG.describe_mismatch(older) == "amin: 1e-10 != (unset)"
    with pytest.raises(ValueError, match=r"another version of sercloak \(unknown \['bogus'\]\)"):
        FeatureConfig.from_dict({**CFG.to_dict(), "bogus": 1})


def test_cache_ignores_normalisation_and_settings_of_another_version_are_refused():
    user = FeatureConfig(normalise="user")
    assert user.extraction() == CFG  # the cache holds raw dB either way
    assert user.fingerprint() != CFG.fingerprint()  # but models and cloaks tell them apart
    legacy = {**CFG.to_dict(), "utterance_norm": "none"}  # saved before `normalise` existed
    del legacy["normalise"]
    # refused, not read with a default that may not be what made the file
    with pytest.raises(ValueError, match=r"missing \['normalise'\], unknown \['utterance_norm'\]"):
        FeatureConfig.from_dict(legacy)
    assert not CFG.matches(legacy) and not user.matches(legacy)
