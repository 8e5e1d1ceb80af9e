"""The pretrained speaker encoder, fed from our features: mel map, volume, partials, weights."""

import warnings

import librosa
import numpy as np
import pytest
import torch

from sercloak.attacks.speaker_encoder import (
    ENCODER_MELS,
    PARTIAL_FRAMES,
    EncoderUnavailable,
    MelConverter,
    SpeakerEncoder,
    cut_partials,
    embed_utterances,
    find_weights,
    mean_square,
    mel_map,
    partial_starts,
    speech_frames,
)
from sercloak.features import FeatureConfig, LogMel

CFG = FeatureConfig()


def voice_like(seconds: float = 2.0, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics of f0 plus a little noise: energy across the whole band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 40) if k * f0 < 7800)
    return (0.1 * wave / np.abs(wave).max() + 0.003 * rng.standard_normal(t.size)).astype(
        np.float32)


def test_mel_map_is_non_negative_and_reproduces_a_direct_40_mel_spectrum():
    matrix = mel_map(CFG)
    assert matrix.shape == (ENCODER_MELS, CFG.n_mels) and (matrix >= 0).all()
    for f0, seed in ((110.0, 0), (220.0, 1)):
        wave = voice_like(f0=f0, seed=seed)
        ours = (10 ** (LogMel(CFG)(wave).astype(np.float64) / 10)) @ matrix.T
        # the encoder's own input: librosa's defaults, Hann 400, hop 160, 40 Slaney bands
        direct = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160,
                                                n_mels=40, pad_mode="constant").T
        inner = slice(5, min(len(ours), len(direct)) - 5)  # away from the padded edges
        error = 10 * np.log10(ours[inner] / direct[inner])
        assert abs(np.median(error)) < 1.0  # no level offset: the window and grid scale is right
        assert np.percentile(np.abs(error), 90) < 4.0


def test_mean_square_estimate_follows_parseval():
    wave = voice_like()
    power = 10 ** (LogMel(CFG)(wave).astype(np.float64) / 10)
    estimate_db = 10 * np.log10(mean_square(power, CFG))
    assert estimate_db == pytest.approx(10 * np.log10(np.mean(wave.astype(np.float64) ** 2)),
                                        abs=0.5)


def test_converter_raises_quiet_audio_to_minus_30_dbfs_and_trims_silence():
    wave = voice_like(seconds=1.5)
    hiss = 1e-4 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    padded = np.concatenate([hiss, wave, hiss])  # a second of near-silence either side
    convert = MelConverter(CFG)
    quieter, quiet = (convert(LogMel(CFG)(g * padded)) for g in (0.1, 0.3))
    np.testing.assert_allclose(quieter, quiet, rtol=1e-3, atol=1e-6 * quiet.max())  # -30 dBFS
    estimate = 10 * np.log10(mean_square(10 ** (LogMel(CFG)(5 * padded) / 10), CFG))
    assert estimate > -25  # loud audio is never lowered:
    loud = convert(LogMel(CFG)(5 * padded))
    raw = (10 ** (LogMel(CFG)(5 * padded).astype(np.float64) / 10)) @ mel_map(CFG).T
    assert loud.max() == pytest.approx(raw.max(), rel=1e-4)
    assert len(quiet) < len(LogMel(CFG)(padded)) - 100  # most of the 2 s of silence is gone
    assert speech_frames(np.ones((50, 40))).all()  # constant energy: nothing to trim


def test_partials_cover_the_utterance_like_the_encoder_package():
    assert partial_starts(100) == [0]  # shorter than one partial: one, zero-padded
    assert partial_starts(189) == [0]  # a second partial would cover only 70%
    assert partial_starts(300) == [0, 77, 154]
    parts = cut_partials(np.ones((100, ENCODER_MELS), np.float32))
    assert parts.shape == (1, PARTIAL_FRAMES, ENCODER_MELS) and parts[0, 100:].sum() == 0


def test_encoder_output_shape_norm_and_determinism(encoder):
    feats = [LogMel(CFG)(voice_like(seconds=s, f0=f)) for s, f in ((1.0, 120), (3.5, 210))]
    first = embed_utterances(encoder, MelConverter(CFG), feats)
    again = embed_utterances(encoder, MelConverter(CFG), feats)
    assert first.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, again)
    assert (first >= 0).all()  # ReLU before the normalisation
    assert float(first[0] @ first[1]) < 0.999  # two voices, two d-vectors


def test_encoder_equals_the_package_forward_pass(encoder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from resemblyzer import VoiceEncoder
        except Exception as err:  # e.g. webrtcvad without pkg_resources
            pytest.skip(f"the resemblyzer package does not import here: {err}")
        package = VoiceEncoder("cpu", verbose=False)
    mels = torch.rand(3, PARTIAL_FRAMES, ENCODER_MELS)
    with torch.no_grad():
        torch.testing.assert_close(encoder(mels), package(mels), atol=1e-6, rtol=1e-5)


def test_encoder_refuses_a_missing_or_wrong_weights_file(tmp_path, encoder):
    with pytest.raises(EncoderUnavailable, match="no such weights file"):
        SpeakerEncoder.load(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt: not a readable"):
        SpeakerEncoder.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"model_state": {"linear.weight": torch.zeros(3, 3)}}, other)
    with pytest.raises(ValueError, match="other.pt: not the GE2E speaker encoder"):
        SpeakerEncoder.load(other)
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="no 'model_state'"):
        SpeakerEncoder.load(other)
    assert find_weights().name == "pretrained.pt"


def test_missing_package_gives_an_install_hint(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderUnavailable, match="pip install"):
        find_weights()
