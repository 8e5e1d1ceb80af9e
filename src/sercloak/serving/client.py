"""The client: audio -> log-mel -> per-user normalisation -> cloak, without torch.

What a phone-class device runs before anything leaves it. It needs NumPy
and soundfile only (`import sercloak.serving.client` imports no torch), and
reproduces the training pipeline exactly:

- log-mel (`log_mel`): centred frames, periodic Hamming window, power
  spectrum, the mel filterbank given as an array, ``10 log10(max(P, amin))``,
  as `features.LogMel` (tested to agree within 0.01 dB);
- per-user normalisation (`UserHistory`): each mel bin in standard units of
  the user's own past speech, from running sums the device keeps
  (`normalise.SpeechStats`, NumPy only);
- the cloak (`CloakArrays`): the cloak file's arrays (a NumPy .npz with a
  JSON header, read without pickle) applied as `cloak.noise.Cloak` does,
  given the same random draws (tested against it).

`Stream.push(samples)` returns the cloaked frames completed so far, so a
device can send features while the user is still speaking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import cloakfile
from ..normalise import SpeechStats, standardise
from ..segments import pad_frames
from .bundle import read_manifest


@dataclass(frozen=True)
class FeatureSettings:
    """The feature settings a client needs (a `FeatureConfig` as a plain dict)."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    amin: float
    normalise: str
    segment_frames: int

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSettings:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})

    @property
    def pad_value(self) -> float:
        """The dB floor, 10·log10(amin): what silence (and padding) reads as."""
        return 10.0 * float(np.log10(self.amin))


def hamming(n: int) -> np.ndarray:
    """The periodic Hamming window (torch.hamming_window(n, periodic=True))."""
    return 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / n)


def frame_window(s: FeatureSettings) -> np.ndarray:
    """The analysis window over n_fft samples (a shorter window sits centred in the frame)."""
    window = np.zeros(s.n_fft)
    left = (s.n_fft - s.win_length) // 2
    window[left : left + s.win_length] = hamming(s.win_length)
    return window


def frames_to_db(frames: np.ndarray, s: FeatureSettings, filterbank: np.ndarray) -> np.ndarray:
    """(frames, n_fft) windowless sample frames -> (frames, n_mels) float32 dB."""
    spectrum = np.fft.rfft(frames * frame_window(s), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return (10.0 * np.log10(np.maximum(power @ filterbank.T, s.amin))).astype(np.float32)


def log_mel(wave: np.ndarray, s: FeatureSettings, filterbank: np.ndarray) -> np.ndarray:
    """(samples,) at s.sample_rate -> (frames, n_mels) float32 dB, frames = 1 + n // hop
    (centred frames, zero padding at both ends, as torch.stft with center=True)."""
    padded = np.pad(np.asarray(wave, dtype=np.float32), s.n_fft // 2)
    n_frames = 1 + len(wave) // s.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, s.n_fft)[:: s.hop_length]
    return frames_to_db(frames[:n_frames], s, filterbank)


@dataclass
class UserHistory:
    """Running speech statistics of one user's past utterances (per-user normalisation)."""

    stats: SpeechStats | None = None

    def add(self, feats: np.ndarray) -> None:
        st = SpeechStats.of(feats)
        self.stats = st if self.stats is None else self.stats + st

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """dB -> standard units of the user's history (of this utterance alone if none)."""
        stats = self.stats if self.stats is not None and self.stats.frames > 1 else \
            SpeechStats.of(feats)
        return standardise(feats, stats)


@dataclass
class CloakArrays:
    """A cloak file's parameters as NumPy arrays: μ, σ, τ, mask, μ_s and the units."""

    config: dict
    feature_config: dict
    mu: np.ndarray
    sigma: np.ndarray
    offset_sigma: np.ndarray
    mu_s: np.ndarray
    mask: np.ndarray
    feat_mean: np.ndarray
    feat_std: np.ndarray
    suppressed: bool

    @classmethod
    def load(cls, path: Path | str) -> CloakArrays:
        meta, arrays = cloakfile.read(path)
        return cls(config=meta["cloak_config"], feature_config=meta["feature_config"],
                   mu=arrays["mu"], sigma=arrays["sigma"],
                   offset_sigma=arrays.get("offset_sigma", np.zeros_like(arrays["sigma"])),
                   mu_s=arrays["mu_s"], mask=arrays["mask"], feat_mean=arrays["feat_mean"],
                   feat_std=arrays["feat_std"], suppressed=bool(meta["suppressed"]))

    @property
    def warp(self) -> float:
        return float(self.config.get("warp", 0.0))

    def draw(self, n_frames: int, rng: np.random.Generator, first_frame: int = 0) -> dict:
        """The random draws for frames [first_frame, first_frame + n_frames): ε per cell;
        η per window (the temporal kind); a warp factor per utterance."""
        window = self.feature_config["segment_frames"]
        n_mels = self.feat_mean.shape[0]
        eps = rng.standard_normal((n_frames, n_mels))
        windows = (first_frame + n_frames - 1) // window - first_frame // window + 1
        eta = rng.standard_normal((windows, n_mels))
        return {"eps": eps, "eta": eta, "factor": self.warp_factor(rng)}

    def warp_factor(self, rng: np.random.Generator) -> float:
        """One utterance's mel-axis warp factor, uniform in [1 - warp, 1 + warp]."""
        return 1.0 + self.warp * (2.0 * rng.random() - 1.0)

    def apply(self, feats: np.ndarray, eps: np.ndarray, eta: np.ndarray, factor: float,
              first_frame: int = 0) -> np.ndarray:
        """(frames, n_mels) features through the cloak with the given draws: `eps` per cell,
        `eta` per window from `first_frame`'s window on, the mel-axis warp `factor`."""
        window = self.feature_config["segment_frames"]
        x = warp_mel_axis(np.asarray(feats, dtype=np.float64), factor) if self.warp else feats
        frames = np.arange(first_frame, first_frame + len(feats))
        cell = self.sigma.ndim == 2  # a per-cell cloak: its row is the frame within a window

        def per_frame(a: np.ndarray) -> np.ndarray:
            return a[frames % window] if cell else a

        z = (x - self.feat_mean) / self.feat_std
        noise = per_frame(self.sigma) * eps
        noise = noise + per_frame(self.offset_sigma) * eta[frames // window - first_frame // window]
        if self.suppressed:
            z = (z + noise) * per_frame(self.mask) + per_frame(self.mu_s)
        else:
            z = z + noise + per_frame(self.mu)
        return (z * self.feat_std + self.feat_mean).astype(np.float32)


def warp_mel_axis(feats: np.ndarray, factor: float) -> np.ndarray:
    """Output bin f reads input bin f·factor (linear interpolation, edge beyond the last):
    `augment.warp_by`'s mel-axis stretch with time left alone."""
    n = feats.shape[1]
    position = np.clip(np.arange(n) * factor, 0, n - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = position - low
    return feats[:, low] * (1 - frac) + feats[:, high] * frac


@dataclass
class Client:
    """Audio in, cloaked features out: what a device sends to the emotion service."""

    settings: FeatureSettings
    filterbank: np.ndarray  # (n_mels, n_fft // 2 + 1)
    cloak: CloakArrays
    history: UserHistory = field(default_factory=UserHistory)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    bundle_id: str | None = None  # the bundle it came from: the service checks it

    @classmethod
    def from_bundle(cls, bundle: Path | str, seed: int | None = None) -> Client:
        """The client part of a bundle (hash-checked): settings, filterbank, cloak."""
        bundle = Path(bundle)
        manifest = read_manifest(bundle)
        filterbank = np.load(bundle / "client" / "mel_filterbank.npy", allow_pickle=False)
        return cls(FeatureSettings.from_dict(manifest["features"]), filterbank,
                   CloakArrays.load(bundle / "client" / "cloak.npz"),
                   rng=np.random.default_rng(seed), bundle_id=manifest["bundle_id"])

    def features(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel as the models see them: dB, or standard units of the user's history;
        an utterance shorter than 2 s padded with the dB floor first, as in training."""
        s = self.settings
        feats = pad_frames(log_mel(wave, s, self.filterbank), s.segment_frames, s.pad_value)
        if s.normalise == "none":
            return feats
        return self.history.normalise(feats)

    def __call__(self, wave: np.ndarray, remember: bool = True) -> np.ndarray:
        """One whole utterance (at the settings' sample rate) -> cloaked (frames, n_mels).

        With per-user normalisation the utterance joins the user's history
        afterwards (`remember`), so it never normalises itself.
        """
        feats = self.features(wave)
        if remember and self.settings.normalise == "user":
            self.history.add(log_mel(wave, self.settings, self.filterbank))
        return self.cloak.apply(feats, **self.cloak.draw(len(feats), self.rng))

    def stream(self) -> Stream:
        """A stream for one utterance: push samples as they come, get cloaked frames."""
        if self.settings.normalise == "user" and self.history.stats is None:
            raise ValueError("a stream with per-user normalisation needs the user's history: "
                             "cloak one whole utterance first (or load the history)")
        return Stream(self)


class Stream:
    """One utterance arriving in pieces: `push(samples)` -> the cloaked frames completed so
    far, `finish()` -> the rest. Together they equal the whole utterance's frames."""

    def __init__(self, client: Client):
        self.client, s = client, client.settings
        self.buffer = np.zeros(s.n_fft // 2, dtype=np.float32)  # the centre padding
        self.start = 0  # buffer[0] is sample start - n_fft // 2 of the padded stream
        self.n_samples = self.done = 0
        self.factor = client.cloak.warp_factor(client.rng)  # one warp per utterance
        self.eta: dict[int, np.ndarray] = {}  # per window, drawn when first needed

    def _frames(self, n_total: int, padding: int = 0) -> np.ndarray:
        """Frames done..n_total-1 from the buffer (then `padding` frames of the dB floor),
        cloaked; the buffer keeps what the next frames need."""
        c, s = self.client, self.client.settings
        count = n_total - self.done
        if count <= 0:
            return np.zeros((0, s.n_mels), np.float32)
        offset = self.done * s.hop_length - self.start
        view = np.lib.stride_tricks.sliding_window_view(self.buffer[offset:], s.n_fft)
        feats = frames_to_db(view[:: s.hop_length][: count - padding], s, c.filterbank)
        feats = pad_frames(feats, count, s.pad_value)
        if s.normalise == "user":
            feats = c.history.normalise(feats)
        window = s.segment_frames
        first, last = self.done // window, (n_total - 1) // window
        for w in range(first, last + 1):
            if w not in self.eta:
                self.eta[w] = c.rng.standard_normal(s.n_mels)
        eps = c.rng.standard_normal((count, s.n_mels))
        eta = np.stack([self.eta[w] for w in range(first, last + 1)])
        out = c.cloak.apply(feats, eps, eta, self.factor, first_frame=self.done)
        self.done = n_total
        keep_from = self.done * s.hop_length - self.start  # the next frame's first sample
        self.buffer, self.start = self.buffer[keep_from:], self.start + keep_from
        return out

    def push(self, samples: np.ndarray) -> np.ndarray:
        s = self.client.settings
        samples = np.asarray(samples, dtype=np.float32).ravel()
        self.buffer = np.concatenate([self.buffer, samples])
        self.n_samples += len(samples)
        available = self.start + len(self.buffer)  # padded samples received so far
        return self._frames(max(0, (available - s.n_fft) // s.hop_length + 1))

    def finish(self) -> np.ndarray:
        """The last frames; an utterance shorter than 2 s padded like `Client.features`."""
        s = self.client.settings
        self.buffer = np.concatenate([self.buffer, np.zeros(s.n_fft // 2, np.float32)])
        n_frames = 1 + self.n_samples // s.hop_length
        padding = max(0, s.segment_frames - n_frames)
        return self._frames(n_frames + padding, padding)
