"""The client: audio -> [voice normalisation] -> log-mel -> per-user normalisation ->
cloak (or the split network's device part), without torch.

What a phone-class device runs before anything leaves it. It needs NumPy
and soundfile only (`import sercloak.serving.client` imports no torch; an
`embedding` bundle's device part runs with onnxruntime, voice normalisation
with pyworld), and reproduces the training pipeline exactly:

- voice normalisation (`VoiceHistory`, a `voicenorm` bundle): the user's
  voice mapped onto the reference voice with factors from the user's own
  past utterances (`voicenorm.py`), before features;
- log-mel (`log_mel`): centred frames, periodic Hamming window, power
  spectrum, the mel filterbank given as an array, ``10 log10(max(P, amin))``,
  as `features.LogMel` (tested to agree within 0.01 dB);
- per-user normalisation (`UserHistory`): each mel bin in standard units of
  the user's own past speech, from running sums the device keeps
  (`normalise.SpeechStats`, NumPy only);
- the cloak (`CloakArrays`): the cloak file's arrays (a NumPy .npz with a
  JSON header, read without pickle) applied as `cloak.noise.Cloak` does,
  given the same random draws (tested against it);
- an `embedding` bundle (`EmbeddingClient`): every 2 s window (every 0.5 s)
  through the split network's device part (client/front.onnx), plus noise
  of the learned scales: (windows, steps, k) is what is sent;
- a `label` bundle (`LabelClient`): every window through the whole emotion
  model (client/emotion.onnx), on the device; the utterance's label (the
  argmax of the windows' mean probability) is all that is sent, as a
  1 × classes one-hot row.

`Stream.push(samples)` returns the cloaked frames completed so far, so a
device can send features while the user is still speaking (cloak bundles
without voice normalisation, which needs the whole utterance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import cloakfile
from ..normalise import SpeechStats, standardise
from ..segments import pad_frames, utterance_probabilities, windows
from ..voicenorm import SETTINGS as VOICENORM_SETTINGS
from ..voicenorm import VoiceFactors, VoiceProfile, normalise_voice
from .bundle import (
    CLOAK,
    DEVICE_MODEL,
    EMBEDDING,
    FILTERBANK,
    FRONT,
    PROTECTION_DESIGN,
    PROTECTION_FILES,
    VOICENORM,
    Bundle,
    BundleError,
    open_bundle,
)


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
    test_hop_frames: int

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
class VoiceHistory:
    """Voice profiles of one user's past utterances: what voice normalisation's factors come
    from."""

    profiles: list[VoiceProfile] = field(default_factory=list)

    def factors(self, wave: np.ndarray, sample_rate: int) -> VoiceFactors:
        """The user's factors (from this utterance alone when there is no history yet)."""
        return VoiceFactors.of(self.profiles or [VoiceProfile.of(wave, sample_rate)])


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

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array it applies, by name (`suppressed` as a 0-d array)."""
        return {"mu": self.mu, "sigma": self.sigma, "offset_sigma": self.offset_sigma,
                "mu_s": self.mu_s, "mask": self.mask, "feat_mean": self.feat_mean,
                "feat_std": self.feat_std, "suppressed": np.asarray(self.suppressed)}

    def noise_scale(self, n_frames: int, first_frame: int = 0) -> np.ndarray:
        """(frames, n_mels): the standard deviation of the noise each cell of frames
        [first_frame, first_frame + n_frames) gets, in feature units; inf where
        suppressed (the cell's value no longer depends on the speech)."""
        per_frame = self._per_frame(np.arange(first_frame, first_frame + n_frames))
        scale = np.hypot(per_frame(self.sigma), per_frame(self.offset_sigma)) * self.feat_std
        scale = np.broadcast_to(scale, (n_frames, len(self.feat_std)))
        if not self.suppressed:
            return scale
        mask = np.broadcast_to(per_frame(self.mask), scale.shape)
        return np.where(mask < 0.5, np.inf, scale * mask)

    def _per_frame(self, frames: np.ndarray):
        """Its arrays' rows for `frames`: a per-cell cloak's row is the frame within its
        2 s window; a per-bin cloak's one row serves every frame."""
        window = self.feature_config["segment_frames"]
        cell = self.sigma.ndim == 2
        return lambda a: a[frames % window] if cell else a

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
        per_frame = self._per_frame(frames)
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


MIN_NOISE = 1e-2  # a cloak or split network's noise scale below this everywhere: degenerate
# what leaves the device must be protected in most of it: at least this share of the sent
# cells suppressed or under noise whose scale is at least a tenth of their own feature's
# spread over the utterance (the paper's cloaks and our split networks: about 90%)
MIN_NOISY_SHARE, MIN_NOISE_TO_SPREAD = 0.5, 0.1


class UnprotectedBundle(BundleError):
    """A bundle whose protection is missing, empty or degenerate."""


def check_protection(bundle: Bundle, allow_unprotected: bool = False,
                     require: str | None = None) -> str:
    """The protection `bundle` applies (a `PROTECTION_FILES` kind), or UnprotectedBundle
    when it states none, states one its design does not run, lacks its files, its arrays
    are not finite or its noise is zero, or it is not the protection `require`d (unless
    `allow_unprotected`: then "none"). Without a trusted key this cannot tell a weaker
    protection from the one the user expects: `require` can."""
    try:
        kind = _protection(bundle)
    except UnprotectedBundle:
        if allow_unprotected:
            return "none"
        raise
    if require is not None and kind != require:
        raise UnprotectedBundle(f"{bundle.folder}: its protection is {kind!r}, not the "
                                f"{require!r} required")
    return kind


def _protection(bundle: Bundle) -> str:
    kind = (bundle.manifest.get("protection") or {}).get("kind")
    if kind not in PROTECTION_FILES:
        raise UnprotectedBundle(f"{bundle.folder}: the bundle states no protection ({kind!r}): "
                                f"nothing would protect what is sent")
    if bundle.design != PROTECTION_DESIGN[kind]:
        raise UnprotectedBundle(f"{bundle.folder}: its protection {kind!r} is not one its "
                                f"design {bundle.design!r} runs")
    missing = [name for name in PROTECTION_FILES[kind] if not bundle.has(name)]
    if missing:
        raise UnprotectedBundle(f"{bundle.folder}: its {kind} protection lacks "
                                f"{', '.join(missing)}")
    if VOICENORM in PROTECTION_FILES[kind]:
        settings = json.loads(bundle.path(VOICENORM).read_text())
        if settings != VOICENORM_SETTINGS:  # this client runs its own, not the server's
            raise UnprotectedBundle(f"{bundle.folder}: its voice normalisation settings are "
                                    f"not the ones this client runs ({VOICENORM_SETTINGS})")
    if CLOAK in PROTECTION_FILES[kind]:
        _check_noise(bundle, "cloak", CloakArrays.load(bundle.path(CLOAK)).arrays())
    if FRONT in PROTECTION_FILES[kind]:
        with np.load(bundle.path(EMBEDDING), allow_pickle=False) as arrays:
            _check_noise(bundle, "split network", {"sigma": arrays["sigma"]})
    return kind


def _check_noise(bundle: Bundle, what: str, arrays: dict[str, np.ndarray]) -> None:
    """Every array finite and some noise scale above `MIN_NOISE` (or a suppressed cell).
    Only a first check: `check_sent` measures what the noise does to what is sent."""
    bad = [name for name, a in arrays.items() if not np.all(np.isfinite(a))]
    if bad:
        raise UnprotectedBundle(f"{bundle.folder}: its {what} has values that are not finite "
                                f"in {', '.join(bad)}")
    noise = max(float(np.max(np.abs(arrays[n]))) for n in ("sigma", "offset_sigma")
                if n in arrays)
    suppresses = "mask" in arrays and bool(arrays.get("suppressed")) and bool(
        np.any(arrays["mask"] < 0.5))
    if noise < MIN_NOISE and not suppresses:
        nor = " and suppresses nothing" if "mask" in arrays else ""
        raise UnprotectedBundle(f"{bundle.folder}: its {what} adds no noise (σ below "
                                f"{MIN_NOISE} everywhere){nor}: it would send clean features")


def check_sent(clean: np.ndarray, sent: np.ndarray, noise_scale: np.ndarray,
               source: str) -> np.ndarray:
    """`sent`, if it is finite and protected in at least `MIN_NOISY_SHARE` of its cells:
    each cell's `noise_scale` (the standard deviation of the noise it got, in the units
    sent; inf where suppressed) at least `MIN_NOISE_TO_SPREAD` of its feature's spread in
    `clean` (the features, or the split network's embedding before its noise); else
    UnprotectedBundle naming `source`. This catches what the arrays' first check cannot
    (noise in one bin, a tiny feature scale, a device part whose outputs dwarf the
    noise); a known offset (μ) is no protection and does not count."""
    if not np.all(np.isfinite(sent)):
        raise UnprotectedBundle(f"{source}: the protected features are not finite: nothing "
                                f"sent")
    spread = clean.reshape(-1, clean.shape[-1]).std(axis=0)
    noisy = np.broadcast_to(noise_scale, clean.shape) >= MIN_NOISE_TO_SPREAD * spread
    share = float(np.mean(noisy))
    if share < MIN_NOISY_SHARE:
        raise UnprotectedBundle(f"{source}: only {share:.0%} of what would be sent is under "
                                f"noise of a tenth of its spread or suppressed (at least "
                                f"{MIN_NOISY_SHARE:.0%} needed): it would send nearly clean "
                                f"features; nothing sent")
    return sent


@dataclass
class Client:
    """Audio in, protected features out: what a device sends to the emotion service."""

    settings: FeatureSettings
    filterbank: np.ndarray  # (n_mels, n_fft // 2 + 1)
    cloak: CloakArrays | None = None  # none: voice normalisation alone
    history: UserHistory = field(default_factory=UserHistory)
    voice: VoiceHistory | None = None  # a voicenorm bundle's
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    bundle_id: str | None = None  # the bundle it came from: the service checks it
    source: str = "client"  # what it came from, for its refusals (the bundle's folder)
    unprotected: bool = False  # `--allow-unprotected`: what it sends is not checked

    @classmethod
    def from_bundle(cls, folder: Path | str, seed: int | None = None,
                    trust_key: bytes | None = None, allow_unprotected: bool = False,
                    require: str | None = None) -> Client:
        """The client part of a bundle: settings, filterbank, and what its protection
        names (a cloak, voice normalisation, the split network's device part, the emotion
        model of a label bundle), nothing else. The bundle is checked
        (`bundle.open_bundle`: hashes, and with `trust_key` its signature) and so is its
        protection (`check_protection`, and `check_sent` on everything a cloak or split
        network sends; a label bundle sends one label by construction): a bundle that
        would send unprotected features is refused unless `allow_unprotected`."""
        bundle = open_bundle(folder, trust_key)
        kind = check_protection(bundle, allow_unprotected, require)
        parts = (PROTECTION_FILES[kind] if kind in PROTECTION_FILES
                 else tuple(n for n in (CLOAK, VOICENORM, FRONT, DEVICE_MODEL)
                            if bundle.has(n)))
        filterbank = np.load(bundle.path(FILTERBANK), allow_pickle=False)
        kind_of_client = (EmbeddingClient if FRONT in parts else
                          LabelClient if DEVICE_MODEL in parts else cls)
        client = kind_of_client(
            FeatureSettings.from_dict(bundle.manifest["features"]), filterbank,
            CloakArrays.load(bundle.path(CLOAK)) if CLOAK in parts else None,
            voice=VoiceHistory() if VOICENORM in parts else None,
            rng=np.random.default_rng(seed), bundle_id=bundle.bundle_id,
            source=str(bundle.folder), unprotected=allow_unprotected)
        return client.with_bundle(bundle)

    def with_bundle(self, bundle: Bundle) -> Client:
        """Whatever else of the bundle this kind of client needs."""
        return self

    def voice_normalised(self, wave: np.ndarray) -> np.ndarray:
        """The audio mapped onto the reference voice (a voicenorm bundle), else as it is."""
        if self.voice is None:
            return wave
        rate = self.settings.sample_rate
        return normalise_voice(wave, rate, self.voice.factors(wave, rate))

    def features(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel as the models see them: dB, or standard units of the user's history;
        an utterance shorter than 2 s padded with the dB floor first, as in training."""
        s = self.settings
        feats = pad_frames(log_mel(wave, s, self.filterbank), s.segment_frames, s.pad_value)
        if s.normalise == "none":
            return feats
        return self.history.normalise(feats)

    def __call__(self, wave: np.ndarray, remember: bool = True) -> np.ndarray:
        """One whole utterance (at the settings' sample rate) -> what is sent: cloaked
        (frames, n_mels) features (an `EmbeddingClient`: (windows, steps, k)).

        With per-user normalisation the utterance joins the user's history
        afterwards (`remember`), so it never normalises itself.
        """
        normalised = self.voice_normalised(wave)
        feats = self.features(normalised)
        if remember and self.settings.normalise == "user":
            self.history.add(log_mel(normalised, self.settings, self.filterbank))
        if remember and self.voice is not None:
            self.voice.profiles.append(VoiceProfile.of(wave, self.settings.sample_rate))
        return self.protect(feats)

    def protect(self, feats: np.ndarray) -> np.ndarray:
        """The utterance's features -> what leaves the device (voice normalisation alone:
        the features of the normalised voice, as they are)."""
        if self.cloak is None:
            return feats
        sent = self.cloak.apply(feats, **self.cloak.draw(len(feats), self.rng))
        return self.checked(feats, sent, self.cloak.noise_scale(len(feats)))

    def checked(self, clean: np.ndarray, sent: np.ndarray, noise_scale) -> np.ndarray:
        """`sent`, once `check_sent` finds it protected (always, when `unprotected`)."""
        return sent if self.unprotected else check_sent(clean, sent, noise_scale, self.source)

    def stream(self) -> Stream:
        """A stream for one utterance: push samples as they come, get cloaked frames."""
        if self.cloak is None or self.voice is not None or type(self) is not Client:
            raise ValueError("streaming is for cloak bundles without voice normalisation "
                             "(which needs the whole utterance): send whole utterances")
        if self.settings.normalise == "user" and self.history.stats is None:
            raise ValueError("a stream with per-user normalisation needs the user's history: "
                             "cloak one whole utterance first (or load the history)")
        return Stream(self)


@dataclass
class EmbeddingClient(Client):
    """An `embedding` bundle's client: the split network's device part on every 2 s window
    (every 0.5 s, padded as the service's windows are), plus noise of its learned scales."""

    front: object = None  # an onnxruntime session of the device part (`bundle.FRONT`)
    sigma: np.ndarray | None = None

    def with_bundle(self, bundle: Bundle) -> EmbeddingClient:
        self.front = onnx_session(bundle.path(FRONT))
        with np.load(bundle.path(EMBEDDING), allow_pickle=False) as arrays:
            self.sigma = arrays["sigma"]
        return self

    def protect(self, feats: np.ndarray) -> np.ndarray:
        s = self.settings
        cut = windows(feats, s.test_hop_frames, s.segment_frames, s.pad_value)
        clean = self.front.run(None, {"features": cut.astype(np.float32)})[0]
        noisy = clean + self.sigma * self.rng.standard_normal(clean.shape)
        return self.checked(clean, noisy.astype(np.float32), np.abs(self.sigma))


@dataclass
class LabelClient(Client):
    """A `label` bundle's client: the whole emotion model on every 2 s window (every
    0.5 s), on the device; it sends the utterance's label alone."""

    model: object = None  # an onnxruntime session of the emotion model (`bundle.DEVICE_MODEL`)
    labels: tuple[str, ...] = ()

    def with_bundle(self, bundle: Bundle) -> LabelClient:
        self.model = onnx_session(bundle.path(DEVICE_MODEL))
        self.labels = tuple(bundle.manifest["labels"])
        classes = self.model.get_outputs()[0].shape[-1]
        if classes != len(self.labels):
            raise BundleError(f"{bundle.folder}: its emotion model answers {classes} classes, "
                              f"its manifest names {len(self.labels)} labels")
        return self

    def protect(self, feats: np.ndarray) -> np.ndarray:
        s = self.settings
        cut = windows(feats, s.test_hop_frames, s.segment_frames, s.pad_value)
        logits = self.model.run(None, {"features": cut.astype(np.float32)})[0]
        if not np.all(np.isfinite(logits)):
            raise UnprotectedBundle(f"{self.source}: the emotion model's output is not "
                                    f"finite: nothing sent")
        sent = np.zeros((1, len(self.labels)), np.float32)
        sent[0, int(utterance_probabilities(logits)[1].argmax())] = 1.0
        return sent


def onnx_session(path: Path):
    """An onnxruntime session of a bundle's device model, on one thread (a device runs one
    utterance at a time; imported here: a cloak bundle's client needs no onnxruntime)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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
        out = c.checked(feats, c.cloak.apply(feats, eps, eta, self.factor,
                                             first_frame=self.done),
                        c.cloak.noise_scale(count, first_frame=self.done))
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
