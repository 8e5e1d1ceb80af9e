"""Log-mel features exactly as the paper, and the 2 s segments cut from them.

16 kHz audio, 50 ms Hamming window (800 samples), 10 ms hop (160 samples),
800-point DFT, 128 mel bins (Slaney mel scale and area normalisation, as
librosa's defaults), power converted to dB: ``10 * log10(max(P, amin))``.
There is no per-utterance reference or top-dB clipping, so a frame's features
depend on that frame alone (what a streaming client needs). An optional
per-user normalisation (`normalise="user"`, see `normalise.py`) standardises
each mel bin with the statistics of the speaker's own speech; it is applied
after the feature cache, which always holds raw dB.

Segments are 200 frames (2 s). Training segments start every 100 frames
(1 s), test segments every 50 frames (0.5 s); when the last window does not
reach the end of the utterance one more window is placed flush with its end.
Utterances shorter than 2 s are padded at the end with the dB floor
(``10 * log10(amin)`` = -100 dB), i.e. as if digital silence followed them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .segments import cut, pad_frames
from .settings import from_fields

NORMALISATIONS = ("none", "user")
# What `sercloak prepare` uses unless told otherwise: per-user normalisation won on
# validation speakers (docs/training.md). FeatureConfig itself defaults to plain dB, which
# is also what a saved configuration without the field meant.
DEFAULT_NORMALISATION = "user"


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 800
    win_length: int = 800
    hop_length: int = 160
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 8000.0
    window: str = "hamming"
    amin: float = 1e-10
    normalise: str = "none"  # "none" (dB) or "user" (standard units of the user's speech)
    segment_frames: int = 200
    train_hop_frames: int = 100
    test_hop_frames: int = 50

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalise!r} "
                             f"(known: {', '.join(NORMALISATIONS)})")

    def to_dict(self) -> dict:
        return asdict(self)

    def extraction(self) -> FeatureConfig:
        """The settings the feature cache depends on (it holds raw dB, never normalised)."""
        return replace(self, normalise="none")

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        return from_fields(cls, d, "feature")

    def matches(self, saved: dict) -> bool:
        """Whether settings saved in a file (a checkpoint, a cloak) are these."""
        try:
            return FeatureConfig.from_dict(saved) == self
        except (TypeError, ValueError):
            return False

    def fingerprint(self) -> str:
        """Short hash of the settings: caches, checkpoints and cloaks carry it."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def pad_value(self) -> float:
        return 10.0 * math.log10(self.amin)

    def describe_mismatch(self, other: FeatureConfig | dict) -> str:
        """Which settings differ, as 'name: mine != theirs' (empty when equal); a setting
        one side lacks reads '(unset)'."""
        mine = self.to_dict()
        theirs = other.to_dict() if isinstance(other, FeatureConfig) else other
        return ", ".join(f"{k}: {mine.get(k, '(unset)')} != {theirs.get(k, '(unset)')}"
                         for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    linear = mel * f_sp
    log = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log, linear)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular filters, shape (n_mels, n_fft // 2 + 1), each of unit area (Slaney)."""
    fft_hz = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    weights = np.maximum(0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


def mel_centres_hz(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency of each mel bin (for plots of noise maps)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    return edges[1:-1]


class LogMel:
    """Waveform (samples,) -> log-mel (frames, n_mels), float32, with torch.stft."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        if cfg.window != "hamming":
            raise ValueError(f"only the paper's Hamming window is implemented, not {cfg.window!r}")
        self.cfg = cfg
        # periodic=True matches scipy.signal.get_window("hamming", N), which librosa uses
        self.window = torch.hamming_window(cfg.win_length, periodic=True)
        # (freq, mel): frames @ fb gives (frames, n_mels) contiguous
        self.fb_t = torch.from_numpy(mel_filterbank(cfg).T.astype(np.float32)).contiguous()

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.cfg.hop_length

    def __call__(self, wave: np.ndarray | torch.Tensor) -> np.ndarray:
        x = torch.as_tensor(wave, dtype=torch.float32)
        with torch.no_grad():
            spec = torch.stft(
                x, self.cfg.n_fft, hop_length=self.cfg.hop_length,
                win_length=self.cfg.win_length, window=self.window,
                center=True, pad_mode="constant", return_complex=True,
            )
            # real² + imag² is about twice as fast as abs()² or view_as_real().square().sum()
            power = spec.real.square() + spec.imag.square()  # (freq, frames)
            mel = power.T @ self.fb_t
            db = mel.clamp_min_(self.cfg.amin).log10_().mul_(10.0)
        return db.numpy()


def pad_to_segment(feats: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Utterances shorter than a segment, padded at the end with the dB floor."""
    return pad_frames(feats, cfg.segment_frames, cfg.pad_value)


def cut_segments(feats: np.ndarray, starts: list[int], cfg: FeatureConfig) -> np.ndarray:
    """(frames, mels) -> (len(starts), segment_frames, mels), padding short utterances."""
    return cut(feats, starts, cfg.segment_frames, cfg.pad_value)
