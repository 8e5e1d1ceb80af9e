"""Waveform anonymisation baselines, applied to the audio before features.

- ``mcadams``: the VoicePrivacy Challenge's baseline B2 (Patino et al.,
  2021). Per 20 ms frame (10 ms hop, √Hann window), an order-20 LPC envelope
  is fitted; every complex pole's angle φ becomes φ^α (α the McAdams
  coefficient), which moves the formants, and the frame is resynthesised
  from its LPC residual through the new envelope and overlap-added. α is
  drawn per utterance uniformly from [0.5, 0.9] (the challenge's 2022 range).
- ``pitch_shift``: pitch and formants shifted together by a random number of
  semitones per utterance, uniform in [−5, 5] (about half the distance from
  a typical male to a typical female voice each way): resampling, then a
  phase-vocoder time stretch back to the original length.

Each utterance's random amount comes from its id (`utterance_rng`), so a
transformed corpus is the same on every run. A transform keeps the length
of its input (to within a few samples, padded or cut back exactly).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np
from scipy.signal import fftconvolve, lfilter, resample_poly

SAMPLE_RATE = 16000


def lpc(frames: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomials [1, a_1, ..., a_order] of each row of `frames` (autocorrelation
    method, Levinson–Durbin run on all frames at once). Silent frames get [1, 0, ...]."""
    frames = np.atleast_2d(frames)
    n_fft = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    spectrum = np.fft.rfft(frames, n_fft, axis=1)
    r = np.fft.irfft(np.abs(spectrum) ** 2, n_fft, axis=1)[:, : order + 1]
    r[:, 0] = r[:, 0] * (1.0 + 1e-9) + 1e-12  # white-noise correction: well posed if silent
    a = np.zeros((len(frames), order + 1))
    a[:, 0] = 1.0
    error = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -(a[:, :i] * r[:, i:0:-1]).sum(axis=1) / error
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        error *= 1.0 - k**2
    return a


def _roots(a: np.ndarray) -> np.ndarray:
    """Roots of each row's polynomial (leading 1), from its companion matrix."""
    n, order = a.shape[0], a.shape[1] - 1
    companion = np.zeros((n, order, order))
    companion[:, 0, :] = -a[:, 1:]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    return np.linalg.eigvals(companion)


def _poly(roots: np.ndarray) -> np.ndarray:
    """Each row's monic polynomial from its roots (the inverse of `_roots`)."""
    coeffs = np.zeros((roots.shape[0], roots.shape[1] + 1), dtype=complex)
    coeffs[:, 0] = 1.0
    for k in range(roots.shape[1]):
        coeffs[:, 1 : k + 2] = coeffs[:, 1 : k + 2] - roots[:, k : k + 1] * coeffs[:, : k + 1]
    return coeffs.real


def mcadams(wave: np.ndarray, alpha: float, sample_rate: int = SAMPLE_RATE,
            order: int = 20) -> np.ndarray:
    """The McAdams transform of `wave` with coefficient `alpha` (1 leaves poles alone)."""
    wave = np.asarray(wave, dtype=np.float64)
    win_len = int(0.02 * sample_rate)
    hop = win_len // 2
    # square-root periodic Hann for analysis and synthesis: their product sums to 1 at 50%
    # overlap, so α = 1 gives the input back (the challenge's code windows twice with Hann,
    # which ripples the amplitude)
    window = np.sqrt(np.hanning(win_len + 1)[:-1])
    n_frames = 1 + max(0, -(-(len(wave) - win_len) // hop))
    padded = np.zeros((n_frames - 1) * hop + win_len)
    padded[: len(wave)] = wave
    frames = np.lib.stride_tricks.sliding_window_view(padded, win_len)[::hop] * window
    a = lpc(frames, order)
    poles = _roots(a)
    # every complex pole's angle φ -> φ^α (its conjugate's likewise); real poles stay
    angle = np.angle(poles)
    moved = np.abs(poles) * np.exp(1j * np.sign(angle) * np.minimum(np.abs(angle) ** alpha,
                                                                      np.pi))
    a_new = _poly(np.where(np.abs(poles.imag) > 0, moved, poles))
    residual = fftconvolve(frames, a, axes=1)[:, :win_len]  # each frame through its A(z)
    out = np.zeros_like(padded)
    for i in range(n_frames):  # and back through the moved envelope 1 / A'(z)
        out[i * hop : i * hop + win_len] += lfilter([1.0], a_new[i], residual[i]) * window
    out = out[: len(wave)]
    peak_in, peak_out = np.abs(wave).max(), np.abs(out).max()
    if peak_out > 0:
        out *= peak_in / peak_out  # the challenge's code rescales to the input's peak
    return out.astype(np.float32)


def time_stretch(wave: np.ndarray, rate: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Phase-vocoder time stretch: `rate` > 1 shortens, < 1 lengthens; pitch unchanged."""
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.concatenate([np.zeros(n_fft // 2), wave, np.zeros(n_fft)])
    n = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n)])
    spec = np.fft.rfft(frames, axis=1)
    steps = np.arange(0, n - 1, rate)
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft  # phase advance per hop
    phase = np.angle(spec[0])
    out_frames = []
    for t in steps:
        k, frac = int(t), t - int(t)
        magnitude = (1 - frac) * np.abs(spec[k]) + frac * np.abs(spec[k + 1])
        out_frames.append(np.fft.irfft(magnitude * np.exp(1j * phase), n_fft) * window)
        delta = np.angle(spec[k + 1]) - np.angle(spec[k]) - expected
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase = phase + expected + delta
    out = np.zeros(len(out_frames) * hop + n_fft)
    norm = np.zeros_like(out)
    for i, f in enumerate(out_frames):
        out[i * hop : i * hop + n_fft] += f
        norm[i * hop : i * hop + n_fft] += window**2
    out = out / np.maximum(norm, 1e-8)
    return out[n_fft // 2 : n_fft // 2 + int(round(len(wave) / rate))]


def pitch_shift(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch and formants up (or down) by `semitones`; the length is kept."""
    wave = np.asarray(wave, dtype=np.float64)
    if semitones == 0:
        return wave.astype(np.float32)
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(200)
    resampled = resample_poly(wave, ratio.numerator, ratio.denominator)  # faster and higher
    stretched = time_stretch(resampled, len(resampled) / len(wave))  # back to the length
    out = np.zeros(len(wave))
    out[: min(len(wave), len(stretched))] = stretched[: len(wave)]
    return out.astype(np.float32)


def utterance_rng(utt_id: str, seed: int = 0) -> np.random.Generator:
    """A generator seeded by the utterance id: its random amount is the same on every run."""
    return np.random.default_rng([zlib.crc32(utt_id.encode()), seed])


class AudioTransform(Protocol):
    """What the feature cache applies to an utterance's audio before features
    (`WaveTransform` here, `voicenorm.VoiceNorm`)."""

    name: str

    def __call__(self, wave: np.ndarray, utt_id: str) -> np.ndarray: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class WaveTransform:
    """A per-utterance random waveform anonymisation, named for cache folders and results."""

    name: str
    low: float
    high: float
    seed: int = 0

    def amount(self, utt_id: str) -> float:
        return float(utterance_rng(utt_id, self.seed).uniform(self.low, self.high))

    def __call__(self, wave: np.ndarray, utt_id: str) -> np.ndarray:
        amount = self.amount(utt_id)
        if self.name == "mcadams":
            return mcadams(wave, amount)
        return pitch_shift(wave, amount)

    def describe(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "seed": self.seed}


TRANSFORMS = {"mcadams": WaveTransform("mcadams", 0.5, 0.9),
              "pitch_shift": WaveTransform("pitch_shift", -5.0, 5.0)}
