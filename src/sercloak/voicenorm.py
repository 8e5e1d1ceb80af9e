"""Per-user voice normalisation: every user's voice mapped onto one reference voice.

Gender lives mostly in two per-speaker constants: the pitch level and the
vocal-tract length (which sets where the formants are). Emotion is expressed
mostly *relative* to the speaker's own baseline. So the device moves its
user's voice onto one fixed reference voice before features:

- **F0**: multiplied by one factor so that the user's median F0 (over the
  voiced frames of their speech) lands on `REFERENCE_F0` (165 Hz, between
  typical adult male and female voices); the contour and its range are kept
  relative to it;
- **spectral envelope**: warped in frequency by one factor α per user,
  ``envelope'(f) = envelope(f / α)``, so that the user's median formants
  F1–F3 land on `REFERENCE_FORMANTS` (a uniform 15.6 cm vocal tract's, again
  between typical male and female tracts), α fitted in the log domain; the
  aperiodicity is warped alike.

Both factors come from the user's own speech only: a device computes them
from its user's past utterances; in evaluation each utterance gets the
factors of its speaker's *other* utterances (leave-one-out, like per-user
normalisation), so no utterance normalises itself. The audio is analysed and
resynthesised with the WORLD vocoder (`pyworld`: DIO + StoneMask F0,
CheapTrick envelope, D4C aperiodicity). Unlike McAdams's random α the
mapping is deterministic per user.

Formants are measured by LPC (order 18, pre-emphasised 25 ms Hamming frames
of the voiced frames, poles between 90 and 4000 Hz narrower than 400 Hz).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .anonymise import _roots, lpc
from .files import atomic_write

REFERENCE_F0 = 165.0  # Hz
REFERENCE_FORMANTS = (550.0, 1650.0, 2750.0)  # Hz: a uniform tube of 15.6 cm
FRAME_PERIOD_MS = 10.0
LPC_ORDER = 18
F0_FACTOR_RANGE = (0.4, 2.5)  # never stretch further, whatever the estimate says
WARP_RANGE = (0.7, 1.4)
SETTINGS = {"name": "voicenorm", "reference_f0": REFERENCE_F0,
            "reference_formants": list(REFERENCE_FORMANTS), "lpc_order": LPC_ORDER,
            "frame_period_ms": FRAME_PERIOD_MS, "f0_factor_range": list(F0_FACTOR_RANGE),
            "warp_range": list(WARP_RANGE)}


def _world():
    """pyworld, imported when used: the base install does not need it for other methods."""
    try:
        with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import pyworld
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError("voice normalisation needs pyworld (`pip install -c "
                          "constraints.txt pyworld`; sercloak's own install does this)") from err
    return pyworld


@dataclass
class VoiceProfile:
    """What one utterance says about its speaker's voice: F0 of its voiced frames (Hz) and
    the first three formants of those frames (rows of F1, F2, F3 in Hz)."""

    f0: np.ndarray
    formants: np.ndarray

    @classmethod
    def of(cls, wave: np.ndarray, sample_rate: int) -> VoiceProfile:
        pw = _world()
        x = np.asarray(wave, dtype=np.float64)
        f0, times = pw.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
        f0 = pw.stonemask(x, f0, times, sample_rate)
        voiced = f0 > 0
        return cls(f0[voiced].astype(np.float32),
                   formant_tracks(x, sample_rate, times[voiced]).astype(np.float32))


def formant_tracks(wave: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """(n, 3) F1–F3 (Hz) at the given times, from LPC poles; frames where fewer than three
    formant-like poles are found are left out."""
    win = int(0.025 * sample_rate)
    emphasised = np.append(wave[0], wave[1:] - 0.97 * wave[:-1])
    padded = np.pad(emphasised, (win // 2, win))
    starts = np.clip((times * sample_rate).astype(int), 0, len(padded) - win)
    if len(starts) == 0:
        return np.zeros((0, 3))
    frames = np.stack([padded[s : s + win] for s in starts]) * np.hamming(win)
    poles = _roots(lpc(frames, LPC_ORDER))
    freq = np.angle(poles) * sample_rate / (2 * np.pi)
    bandwidth = -np.log(np.maximum(np.abs(poles), 1e-9)) * sample_rate / np.pi
    ok = (freq > 90) & (freq < 4000) & (bandwidth < 400)
    rows = []
    for f, keep in zip(freq, ok, strict=True):
        found = np.sort(f[keep])
        if len(found) >= 3:
            rows.append(found[:3])
    return np.array(rows).reshape(-1, 3)


@dataclass(frozen=True)
class VoiceFactors:
    """One user's mapping onto the reference voice."""

    f0: float = 1.0  # F0 multiplier
    warp: float = 1.0  # frequency warp α of the envelope

    @classmethod
    def of(cls, profiles: list[VoiceProfile]) -> VoiceFactors:
        """The factors of a user from their utterances' profiles (identity when they hold
        no voiced speech)."""
        f0 = np.concatenate([p.f0 for p in profiles]) if profiles else np.zeros(0)
        formants = np.concatenate([p.formants for p in profiles]) if profiles else np.zeros(0)
        f0_factor = REFERENCE_F0 / np.median(f0) if f0.size else 1.0
        warp = 1.0
        if formants.size:
            medians = np.median(formants.reshape(-1, 3), axis=0)
            warp = float(np.exp(np.mean(np.log(np.array(REFERENCE_FORMANTS) / medians))))
        return cls(float(np.clip(f0_factor, *F0_FACTOR_RANGE)),
                   float(np.clip(warp, *WARP_RANGE)))


def leave_one_out(speakers: list[str], profiles: list[VoiceProfile]) -> list[VoiceFactors]:
    """Each utterance's factors from its speaker's *other* utterances only."""
    by_speaker: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    factors = [VoiceFactors()] * len(profiles)
    for members in by_speaker.values():
        for i in members:
            factors[i] = VoiceFactors.of([profiles[j] for j in members if j != i])
    return factors


def warp_frequency(spectra: np.ndarray, warp: float) -> np.ndarray:
    """(frames, bins) spectra with every frame's f moved to warp * f: out(f) = in(f / warp)."""
    if warp == 1.0:
        return spectra
    bins = np.arange(spectra.shape[1], dtype=np.float64)
    source = np.clip(bins / warp, 0, bins[-1])
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, len(bins) - 1)
    frac = source - low
    return spectra[:, low] * (1 - frac) + spectra[:, high] * frac


def normalise_voice(wave: np.ndarray, sample_rate: int, factors: VoiceFactors) -> np.ndarray:
    """`wave` resynthesised with F0 times `factors.f0` and its envelope warped by
    `factors.warp`; the same length and peak level as the input."""
    pw = _world()
    x = np.asarray(wave, dtype=np.float64)
    if not np.any(x):
        return x.astype(np.float32)
    f0, times = pw.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, times, sample_rate)
    envelope = pw.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pw.d4c(x, f0, times, sample_rate)
    envelope = np.ascontiguousarray(warp_frequency(envelope, factors.warp))
    aperiodicity = np.ascontiguousarray(np.clip(warp_frequency(aperiodicity, factors.warp),
                                                0.0, 1.0))
    y = pw.synthesize(f0 * factors.f0, envelope, aperiodicity, sample_rate,
                      frame_period=FRAME_PERIOD_MS)
    out = np.zeros(len(x))
    out[: min(len(x), len(y))] = y[: len(x)]
    peak = np.abs(out).max()
    if peak > 0:
        out *= np.abs(x).max() / peak
    return out.astype(np.float32)


@dataclass
class VoiceNorm:
    """Voice normalisation of a set of utterances, each with its own factors (e.g. from
    `leave_one_out`): a waveform transform for `cache.FeatureCache`."""

    factors: dict[str, VoiceFactors]  # utt_id -> factors
    sample_rate: int = 16000
    name: str = "voicenorm"
    _digest: str = field(default="", repr=False)

    def __call__(self, wave: np.ndarray, utt_id: str) -> np.ndarray:
        return normalise_voice(wave, self.sample_rate, self.factors[utt_id])

    def describe(self) -> dict:
        """What makes its output: references, analysis settings, and every utterance's
        factors (as a digest), so a cache of other factors is never reused."""
        if not self._digest:
            blob = json.dumps(sorted((k, v.f0, v.warp) for k, v in self.factors.items()))
            self._digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return {**SETTINGS, "factors": self._digest}


def voice_profiles(utterances: list, path: Path, sample_rate: int,
                   show_progress: bool = True) -> dict[str, VoiceProfile]:
    """The profile of every utterance (`corpora.Utterance`), read from `path` or analysed
    (then saved there); an utterance that cannot be decoded gets an empty profile."""
    from tqdm import tqdm

    from .audio import AudioError, load_audio

    profiles = load_profiles(path) if path.is_file() else {}
    missing = [u for u in utterances if u.utt_id not in profiles]
    for u in tqdm(missing, desc="voice profiles", unit="utt", disable=not show_progress):
        try:
            profiles[u.utt_id] = VoiceProfile.of(load_audio(u.path, sample_rate), sample_rate)
        except AudioError:  # the feature cache reports it when it fails there too
            profiles[u.utt_id] = VoiceProfile(np.zeros(0, np.float32), np.zeros((0, 3)))
    if missing:
        save_profiles(path, profiles)
    return profiles


def save_profiles(path: Path, profiles: dict[str, VoiceProfile]) -> None:
    """Profiles of many utterances in one .npz (no pickle), written atomically."""
    ids = sorted(profiles)
    arrays = {"ids": np.array(ids),
              "f0_sizes": np.array([len(profiles[i].f0) for i in ids]),
              "formant_sizes": np.array([len(profiles[i].formants) for i in ids]),
              "f0": np.concatenate([profiles[i].f0 for i in ids] or [np.zeros(0)]),
              "formants": np.concatenate([profiles[i].formants for i in ids]
                                         or [np.zeros((0, 3))])}
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load_profiles(path: Path) -> dict[str, VoiceProfile]:
    with np.load(path, allow_pickle=False) as data:
        ids = data["ids"].tolist()
        f0 = np.split(data["f0"], np.cumsum(data["f0_sizes"])[:-1])
        formants = np.split(data["formants"], np.cumsum(data["formant_sizes"])[:-1])
    return {i: VoiceProfile(a, b) for i, a, b in zip(ids, f0, formants, strict=True)}
