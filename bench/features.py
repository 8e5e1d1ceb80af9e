"""Log-mel throughput of sercloak's extractor against librosa, same audio, same run.

    python bench/features.py [--files 400]

Audio: the first N files of nEMO in ../shared/corpora (or the synthetic corpus
if that is absent). Both extractors use the paper's parameters and get one
warm-up call. Throughput is seconds of audio per second of wall time.
Last line: key=value figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from sercloak.features import FeatureConfig, LogMel

NEMO = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "nemo" / "samples"


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=wave, sr=16000, n_fft=800, hop_length=160, win_length=800, window="hamming",
        center=True, pad_mode="constant", n_mels=128, power=2.0,
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T


def load_waves(n_files: int) -> tuple[list[np.ndarray], str]:
    if NEMO.is_dir():
        files, source = sorted(NEMO.iterdir())[:n_files], "nemo"
    else:
        from sercloak.corpora import synthetic
        folder = Path(tempfile.mkdtemp()) / "synthetic"
        synthetic.generate(folder)
        files, source = sorted(folder.glob("*/*.wav"))[:n_files], "synthetic"
    return [sf.read(f, dtype="float32")[0] for f in files], source


def throughput(fn, waves: list[np.ndarray], repeats: int = 3) -> tuple[float, list]:
    fn(waves[0])  # warm-up (librosa's numba kernels, torch's FFT plans)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = [fn(w) for w in waves]
        best = min(best, time.perf_counter() - start)
    seconds = sum(w.size for w in waves) / 16000
    return seconds / best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=400)
    args = parser.parse_args()
    waves, source = load_waves(args.files)
    ours_fn = LogMel(FeatureConfig())
    ours_tp, ours = throughput(ours_fn, waves)
    ref_tp, ref = throughput(librosa_logmel, waves)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True))
    audio_s = sum(w.size for w in waves) / 16000
    print(f"{len(waves)} files of {source}, {audio_s:.0f} s of audio, "
          f"torch threads={torch.get_num_threads()}", file=sys.stderr)
    print(f"sercloak: {ours_tp:.0f} s/s   librosa: {ref_tp:.0f} s/s", file=sys.stderr)
    print(f"speedup_vs_librosa={ours_tp / ref_tp:.2f} ours_audio_s_per_s={ours_tp:.0f} "
          f"librosa_audio_s_per_s={ref_tp:.0f} max_db_diff={max_diff:.4f} files={len(waves)}")


if __name__ == "__main__":
    main()
