"""Per-user voice normalisation on synthetic voiced signals with known F0 and formants."""

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="voice normalisation needs pyworld (a dependency)")

from scipy.signal import lfilter  # noqa: E402

from sercloak.voicenorm import (  # noqa: E402
    REFERENCE_F0,
    REFERENCE_FORMANTS,
    VoiceFactors,
    VoiceProfile,
    leave_one_out,
    normalise_voice,
    warp_frequency,
)

SR = 16000


def vowel(f0: float, formants, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """A glottal pulse train at `f0` (with a little vibrato) through resonators at
    `formants`: a sustained vowel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)) / SR)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = lfilter([1.0], [1.0, -0.95], pulses) + 0.002 * rng.standard_normal(len(t))
    wave = source
    for freq, bandwidth in zip(formants, (80, 100, 120), strict=True):
        r = np.exp(-np.pi * bandwidth / SR)
        wave = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / SR), r * r], wave)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def measured(wave: np.ndarray) -> tuple[float, np.ndarray]:
    profile = VoiceProfile.of(wave, SR)
    return float(np.median(profile.f0)), np.median(profile.formants, axis=0)


def test_a_male_like_voice_moves_to_the_reference():
    scale = 0.85  # a longer vocal tract: every formant lower
    wave = vowel(115.0, [scale * f for f in REFERENCE_FORMANTS])
    f0, formants = measured(wave)
    assert f0 == pytest.approx(115.0, rel=0.03)
    assert formants == pytest.approx([scale * f for f in REFERENCE_FORMANTS], rel=0.06)
    factors = VoiceFactors.of([VoiceProfile.of(wave, SR)])
    assert factors.f0 == pytest.approx(REFERENCE_F0 / 115.0, rel=0.03)
    assert factors.warp == pytest.approx(1 / scale, rel=0.06)
    out_f0, out_formants = measured(normalise_voice(wave, SR, factors))
    assert out_f0 == pytest.approx(REFERENCE_F0, rel=0.04)
    assert out_formants[:2] == pytest.approx(REFERENCE_FORMANTS[:2], rel=0.08)


def test_a_voice_already_at_the_reference_is_unchanged():
    wave = vowel(REFERENCE_F0, REFERENCE_FORMANTS, seed=1)
    factors = VoiceFactors.of([VoiceProfile.of(wave, SR)])
    assert factors.f0 == pytest.approx(1.0, abs=0.03)
    assert factors.warp == pytest.approx(1.0, abs=0.06)
    f0, formants = measured(wave)
    out_f0, out_formants = measured(normalise_voice(wave, SR, factors))
    assert out_f0 == pytest.approx(f0, rel=0.03)
    assert out_formants[:2] == pytest.approx(formants[:2], rel=0.06)
    # and the identity mapping keeps the length and level
    same = normalise_voice(wave, SR, VoiceFactors())
    assert same.shape == wave.shape
    assert np.abs(same).max() == pytest.approx(np.abs(wave).max(), rel=1e-4)


def test_factors_come_only_from_the_same_speakers_other_utterances():
    def profile(f0: float) -> VoiceProfile:
        return VoiceProfile(np.full(50, f0, np.float32),
                            np.tile(np.array(REFERENCE_FORMANTS, np.float32), (50, 1)))
    speakers = ["a", "a", "a", "b", "b"]
    profiles = [profile(100.0), profile(110.0), profile(500.0), profile(200.0), profile(220.0)]
    factors = leave_one_out(speakers, profiles)
    # utterance 2 (an outlier) is normalised by a's other two utterances only (median 105)
    assert factors[2].f0 == pytest.approx(REFERENCE_F0 / 105.0)
    # a's first utterance by the other two of a (median of 110 and 500), never by b
    assert factors[0].f0 == pytest.approx(REFERENCE_F0 / 305.0)
    assert factors[3].f0 == pytest.approx(REFERENCE_F0 / 220.0)
    assert factors[4].f0 == pytest.approx(REFERENCE_F0 / 200.0)
    # a speaker with one utterance has nothing else to go by: left as it is
    assert leave_one_out(["c"], [profile(300.0)])[0] == VoiceFactors()


def test_warp_moves_a_peak_by_the_factor():
    spectra = np.zeros((1, 513))
    spectra[0, 100] = 1.0
    assert warp_frequency(spectra, 1.2)[0].argmax() == 120
    assert warp_frequency(spectra, 1.0) is spectra
