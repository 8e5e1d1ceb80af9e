"""Decode audio files to 16 kHz mono float32, or say clearly why not.

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG, ...). Resampling is a
band-limited polyphase filter (scipy's `resample_poly`, Kaiser-windowed FIR),
so downsampling from 44.1 or 48 kHz does not alias energy above 8 kHz into the
features.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
# Below this peak amplitude (-100 dBFS) a file is treated as silent: there is
# nothing to recognise and its log-mel features would be the floor everywhere.
SILENCE_PEAK = 1e-5


class AudioError(ValueError):
    """A file that cannot be used, with the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling of a 1-D signal."""
    if orig_sr == target_sr:
        return wave
    ratio = Fraction(target_sr, orig_sr)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def load_audio(path: Path | str, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` as mono float32 at `target_sr`; raise AudioError if unusable."""
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/...
        raise AudioError(path, f"unreadable audio ({err})") from err
    if wave.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    wave = wave.mean(axis=1)  # downmix to mono
    if not np.isfinite(wave).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    if np.abs(wave).max() < SILENCE_PEAK:
        raise AudioError(path, "silent audio (peak below -100 dBFS)")
    return resample(wave, sr, target_sr)
