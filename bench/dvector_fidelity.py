"""How faithful sercloak's d-vectors are to the speaker encoder's own waveform pipeline.

    python bench/dvector_fidelity.py [--files 336] [--actors 24]

On RAVDESS from ../shared/corpora (the four emotions sercloak uses, spread over
the actors), each file gets two d-vectors:

- the package's: `resemblyzer.preprocess_wav` (volume to -30 dBFS, webrtcvad
  silence trimming) and `VoiceEncoder.embed_utterance` on the waveform;
- ours: sercloak's 128-mel dB features -> `MelConverter` -> our torch
  `SpeakerEncoder` (same weights), as every attacker computes them.

Prints the cosine between the two (mean, median, 10th percentile), the mel
error of the conversion against librosa's 40-mel of the same wave, and how
long each pipeline took. This bench may import the package; the library does
not. Last line: key=value figures. Target: mean_cosine >= 0.85.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import librosa
import numpy as np
import torch

from sercloak.attacks.speaker_encoder import MelConverter, SpeakerEncoder, embed_utterances
from sercloak.audio import load_audio
from sercloak.corpora import ravdess
from sercloak.features import FeatureConfig, LogMel

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"


def pick_files(n_files: int, n_actors: int) -> list[Path]:
    """Round-robin over actors so that every speaker is represented."""
    listing = ravdess.load(RAVDESS)
    by_actor: dict[str, list] = {}
    for u in listing.utterances:
        if u.emotion is not None:
            by_actor.setdefault(u.speaker, []).append(u.path)
    actors = sorted(by_actor)[:n_actors]
    files = []
    for i in range(max(len(v) for v in by_actor.values())):
        files += [by_actor[a][i] for a in actors if i < len(by_actor[a])]
    return files[:n_files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=336)
    parser.add_argument("--actors", type=int, default=24)
    args = parser.parse_args()
    if not RAVDESS.is_dir():
        raise SystemExit(f"needs RAVDESS at {RAVDESS}")
    with warnings.catch_warnings():  # the package imports deprecated scipy and pkg_resources
        warnings.simplefilter("ignore")
        import resemblyzer

    files = pick_files(args.files, args.actors)
    waves = [load_audio(f) for f in files]
    cfg = FeatureConfig()
    feats = [LogMel(cfg)(w) for w in waves]

    started = time.perf_counter()
    package = resemblyzer.VoiceEncoder("cpu", verbose=False)
    theirs = np.stack([package.embed_utterance(resemblyzer.preprocess_wav(w)) for w in waves])
    package_s = time.perf_counter() - started

    started = time.perf_counter()
    ours = embed_utterances(SpeakerEncoder.load(), MelConverter(cfg), feats)
    ours_s = time.perf_counter() - started
    cosine = np.sum(ours * theirs, axis=1)

    # the conversion alone, before volume and trimming: our 40-mel against librosa's
    matrix = MelConverter(cfg).matrix
    errors = []
    for wave, f in zip(waves, feats, strict=True):
        direct = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160,
                                                n_mels=40, pad_mode="constant").T
        converted = 10 ** (f.astype(np.float64) / 10) @ matrix.T
        n = min(len(direct), len(converted))
        loud = direct[:n].sum(1) > 1e-3 * direct[:n].sum(1).max()  # speech, not silence
        errors.append((10 * np.log10(converted[:n][loud] + 1e-10)
                       - 10 * np.log10(direct[:n][loud] + 1e-10)).ravel())
    err = np.concatenate(errors)

    print(f"{len(files)} RAVDESS files from {args.actors} actors; torch threads "
          f"{torch.get_num_threads()}")
    print(f"cosine(ours, package): mean {cosine.mean():.3f}, median {np.median(cosine):.3f}, "
          f"10th percentile {np.percentile(cosine, 10):.3f}")
    print(f"converted 40-mel vs librosa (speech frames): mean {err.mean():+.2f} dB, mean abs "
          f"{np.abs(err).mean():.2f} dB, 90th percentile abs {np.percentile(np.abs(err), 90):.2f}")
    print(f"time: package pipeline {package_s:.1f} s, ours {ours_s:.1f} s (features not counted)")
    print(f"mean_cosine={cosine.mean():.3f} median_cosine={np.median(cosine):.3f} "
          f"p10_cosine={np.percentile(cosine, 10):.3f} mel_mean_abs_db={np.abs(err).mean():.2f} "
          f"files={len(files)} package_s={package_s:.1f} ours_s={ours_s:.1f}")


if __name__ == "__main__":
    main()
