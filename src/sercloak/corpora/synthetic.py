"""A synthetic demo corpus, generated deterministically (no download).

This is NOT speech: it is a source-filter imitation of voiced speech, built so
that both of sercloak's tasks are learnable but not trivial.

- Gender shows where it does in real voices: in pitch (about 115 Hz for male
  speakers, 205 Hz for female ones) and in formant spacing (female vocal tracts
  are shorter, so every formant sits about 17% higher).
- Emotion shows in prosody: pitch level and range, energy, tempo and spectral
  tilt (sad is low, flat, quiet, slow and dark; angry is loud, fast and bright;
  happy is high with a wide pitch range).
- Speakers differ: each has its own pitch, formant scale, tilt, breathiness and
  expressiveness (how strongly emotion shows in the voice), and every utterance
  is jittered, so neither task is solved by one threshold.

The generator writes 16-bit WAV files and a ``manifest.csv`` in the generic
manifest format, then the manifest loader reads them like any other corpus.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from . import manifest
from .record import EMOTIONS, CorpusListing

NAME = "synthetic"
GENERATOR_VERSION = 1
SAMPLE_RATE = 16000

# (pitch factor, pitch range, energy, speaking rate, tilt): the "acted" prosody.
_PROSODY = {
    "neutral": (1.00, 0.08, 1.00, 1.00, 0.0),
    "happy": (1.22, 0.24, 1.30, 1.12, 0.3),
    "sad": (0.90, 0.04, 0.55, 0.78, -0.5),
    "angry": (1.12, 0.14, 1.90, 1.20, 0.7),
}
# Formants (Hz) of five vowels for a reference male vocal tract.
_VOWELS = np.array([
    [730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410],
], dtype=float)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0])


@dataclass(frozen=True)
class SyntheticSpec:
    n_speakers: int = 20  # half female, half male
    utterances_per_emotion: int = 6
    seed: int = 0


@dataclass(frozen=True)
class _Speaker:
    name: str
    gender: str
    f0: float
    formant_scale: float
    tilt: float
    breath: float
    expressiveness: float


def _speakers(spec: SyntheticSpec, rng: np.random.Generator) -> list[_Speaker]:
    speakers = []
    for i in range(spec.n_speakers):
        gender = "female" if i % 2 == 0 else "male"
        female = gender == "female"
        speakers.append(_Speaker(
            name=f"spk{i:02d}",
            gender=gender,
            f0=rng.normal(205, 18) if female else rng.normal(115, 12),
            formant_scale=rng.normal(1.17, 0.04) if female else rng.normal(1.0, 0.04),
            tilt=rng.normal(0.0, 0.25),
            breath=rng.uniform(0.01, 0.06),
            expressiveness=rng.uniform(0.55, 1.0),
        ))
    return speakers


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """Second-order resonator (one formant) with unit gain at 0 Hz."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    c = 2 * r * np.cos(2 * np.pi * min(freq, 0.45 * SAMPLE_RATE) / SAMPLE_RATE)
    return lfilter([1 - c + r * r], [1, -c, r * r], x)


def _vowel(spk: _Speaker, f0: np.ndarray, tilt: float, rough: float,
           rng: np.random.Generator) -> np.ndarray:
    """A voiced segment: glottal pulses -> tilt -> three formants."""
    f0 = f0 * (1 + rough * rng.standard_normal(f0.size).cumsum() / np.sqrt(f0.size))
    phase = np.cumsum(f0 / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=np.floor(phase[0])).astype(float)
    pole = np.clip(0.93 - 0.06 * tilt, 0.75, 0.985)  # brighter voice = less low-pass
    source = lfilter([1.0], [1.0, -pole], pulses) + spk.breath * rng.standard_normal(f0.size)
    formants = _VOWELS[rng.integers(len(_VOWELS))] * spk.formant_scale
    out = source
    for freq, bw in zip(formants, _BANDWIDTHS, strict=True):
        out = _resonate(out, freq * rng.normal(1, 0.03), bw)
    ramp = min(160, f0.size // 4)
    env = np.ones(f0.size)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    return out * env


def _utterance(spk: _Speaker, emotion: str, rng: np.random.Generator) -> np.ndarray:
    pitch, span, energy, rate, tilt = _PROSODY[emotion]
    e = spk.expressiveness
    pitch = (1 + e * (pitch - 1)) * rng.normal(1, 0.04)
    span = span * (0.5 + e)
    rate = (1 + e * (rate - 1)) * rng.normal(1, 0.07)
    energy = (1 + e * (energy - 1)) * rng.lognormal(0, 0.15)
    tilt = spk.tilt + e * tilt + rng.normal(0, 0.1)
    rough = 0.02 if emotion == "angry" else 0.004

    n_syll = int(rng.integers(6, 12))
    pieces = [np.zeros(int(rng.uniform(0.15, 0.3) * SAMPLE_RATE))]
    for k in range(n_syll):
        consonant = int(rng.uniform(0.03, 0.07) * SAMPLE_RATE / rate)
        burst = np.diff(rng.standard_normal(consonant + 1)) * 0.05  # high-passed noise
        vowel_len = int(rng.uniform(0.12, 0.22) * SAMPLE_RATE / rate)
        declination = 1 - 0.15 * k / n_syll
        accent = 1 + span * rng.uniform(-1, 1)
        contour = np.linspace(1 + span / 3, 1 - span / 3, vowel_len)
        f0 = spk.f0 * pitch * declination * accent * contour
        pieces += [burst, _vowel(spk, f0, tilt, rough, rng)]
        if rng.random() < 0.25:
            pieces.append(np.zeros(int(rng.uniform(0.05, 0.2) * SAMPLE_RATE / rate)))
    pieces.append(np.zeros(int(rng.uniform(0.15, 0.3) * SAMPLE_RATE)))
    signal = np.concatenate(pieces)
    signal *= 0.05 * energy / (np.sqrt(np.mean(signal**2)) + 1e-9)
    signal += 3e-4 * rng.standard_normal(signal.size)  # room noise: never digital silence
    return np.clip(signal, -1, 1).astype(np.float32)


def generate(folder: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the corpus to `folder` (skipped if already there with the same spec)."""
    folder = Path(folder)
    stamp = {"generator_version": GENERATOR_VERSION, **asdict(spec)}
    stamp_file = folder / "synthetic.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return folder / "manifest.csv"
    if folder.is_dir() and any(folder.iterdir()) and not stamp_file.is_file():
        raise FileExistsError(
            f"synthetic: {folder} is not empty and holds no earlier synthetic corpus; "
            f"give an empty or new folder to generate into"
        )
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(spec.seed)
    rows = []
    for spk in _speakers(spec, rng):
        spk_rng = np.random.default_rng([spec.seed, int(spk.name[3:])])
        for emotion in EMOTIONS:
            for k in range(spec.utterances_per_emotion):
                rel = f"{spk.name}/{spk.name}_{emotion}_{k:02d}.wav"
                (tmp / spk.name).mkdir(exist_ok=True)
                sf.write(tmp / rel, _utterance(spk, emotion, spk_rng), SAMPLE_RATE,
                         subtype="PCM_16")
                rows.append((rel, spk.name, spk.gender, emotion))
    with open(tmp / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(manifest.COLUMNS)
        writer.writerows(rows)
    (tmp / "synthetic.json").write_text(json.dumps(stamp, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder / "manifest.csv"


def load(folder: Path, spec: SyntheticSpec = SyntheticSpec()) -> CorpusListing:
    """Generate the corpus into `folder` if needed, then read it."""
    return manifest.load(generate(folder, spec), corpus=NAME)
