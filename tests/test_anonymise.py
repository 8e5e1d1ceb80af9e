"""The waveform anonymisation baselines: McAdams (VoicePrivacy B2) and pitch shifting."""

import numpy as np
import pytest
from scipy.signal import lfilter

from sercloak.anonymise import TRANSFORMS, lpc, mcadams, pitch_shift, time_stretch

SR = 16000


def vowel(formants=(700.0, 1200.0, 2600.0), f0=120.0, seconds=1.0) -> np.ndarray:
    """A synthetic vowel: a glottal pulse train through resonators at `formants` (Hz)."""
    n = int(SR * seconds)
    source = np.zeros(n)
    source[:: int(SR / f0)] = 1.0
    out = source
    for f in formants:  # one two-pole resonator per formant, 80 Hz bandwidth
        r = np.exp(-np.pi * 80 / SR)
        out = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r], out)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def formant_peaks(wave: np.ndarray) -> np.ndarray:
    """Formant frequencies (Hz) from the LPC poles of the middle 40 ms."""
    mid = len(wave) // 2
    frame = wave[mid : mid + 640] * np.hanning(640)
    roots = np.roots(lpc(frame.astype(float), 12)[0])
    roots = roots[(np.imag(roots) > 0) & (np.abs(roots) > 0.9)]
    return np.sort(np.angle(roots) * SR / (2 * np.pi))


def test_mcadams_keeps_length_and_moves_formants_of_a_vowel():
    x = vowel()
    y = mcadams(x, 0.8)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    before, after = formant_peaks(x), formant_peaks(y)
    assert abs(before[0] - 700) < 60  # the estimate finds the vowel's first formant
    # φ -> φ^0.8 with φ = 2π·700/16000 ≈ 0.27 rad raises it to ≈ 0.35 rad, ≈ 900 Hz
    expected = (2 * np.pi * 700 / SR) ** 0.8 * SR / (2 * np.pi)
    assert abs(after[0] - expected) < 80 and after[0] > before[0] + 100
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-4)  # rescaled to peak


def test_mcadams_coefficient_one_leaves_the_signal_nearly_unchanged():
    x = vowel()
    y = mcadams(x, 1.0)
    inner = slice(400, -400)  # the first and last half frames lack their overlap partner
    assert np.corrcoef(x[inner], y[inner])[0, 1] > 0.99


def test_pitch_shift_keeps_length_and_moves_the_pitch():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    y = pitch_shift(x, 4.0)
    assert y.shape == x.shape
    spectrum = np.abs(np.fft.rfft(y[2000:-2000]))
    peak = np.fft.rfftfreq(len(y[2000:-2000]), 1 / SR)[spectrum.argmax()]
    assert peak == pytest.approx(200 * 2 ** (4 / 12), abs=4)
    assert np.array_equal(pitch_shift(x, 0.0), x)


def test_time_stretch_changes_duration_by_the_rate():
    x = np.random.default_rng(0).standard_normal(SR)
    assert len(time_stretch(x, 2.0)) == pytest.approx(SR / 2, rel=0.03)
    assert len(time_stretch(x, 0.5)) == pytest.approx(SR * 2, rel=0.03)


def test_per_utterance_amounts_are_fixed_by_the_id_and_within_range():
    mc = TRANSFORMS["mcadams"]
    amounts = [mc.amount(f"corpus:utt{i}") for i in range(200)]
    assert all(0.5 <= a <= 0.9 for a in amounts) and np.std(amounts) > 0.08
    assert mc.amount("corpus:utt7") == amounts[7]  # the same on every run
    assert all(-5 <= TRANSFORMS["pitch_shift"].amount(f"u{i}") <= 5 for i in range(50))
