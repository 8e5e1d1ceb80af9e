"""Client cost per second of audio: the NumPy client against the torch pipeline, one core.

    python bench/client.py [--files 100] [--cloak FILE] [--bundle BUNDLE]

Both turn the same nEMO utterances (../shared/corpora; a generated tone if
absent) into cloaked features: log-mel, then a temporal cloak with a warp
(the most expensive kind; `--cloak` takes a trained cloak file instead).
The NumPy client (`serving.client`, what a device runs) against torch's
`LogMel` + `Cloak`, both pinned to one thread, best of 3 after a warm-up.
With `--bundle`, that bundle's whole client too (any design: a split
network's device part or a label bundle's emotion model run with
onnxruntime), on the same files and thread, against the NumPy cloak client
just measured: `bundle_over_cloak_client` is how many times its cost.
Last line: key=value figures; `client_x_realtime` is seconds of audio per
second of compute (target >= 100).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from sercloak.cloak import Cloak, CloakConfig
from sercloak.features import FeatureConfig, LogMel, mel_filterbank
from sercloak.serving.client import Client, CloakArrays, FeatureSettings

NEMO = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "nemo" / "samples"


def waves(n: int) -> tuple[list[np.ndarray], str]:
    if NEMO.is_dir():
        return [sf.read(f, dtype="float32")[0] for f in sorted(NEMO.iterdir())[:n]], "nemo"
    t = np.arange(3 * 16000) / 16000
    return [(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)] * n, "tone"


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--cloak", type=Path, help="a cloak file (default: a temporal one)")
    parser.add_argument("--bundle", type=Path, help="a bundle whose client to measure too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = FeatureConfig()
    if args.cloak is None:
        torch.manual_seed(0)
        cloak = Cloak(CloakConfig(kind="temporal", warp=0.2), torch.full((128,), -40.0),
                      torch.full((128,), 10.0))
        cloak.suppress(40)
        args.cloak = Path(tempfile.mkdtemp()) / "cloak.npz"
        cloak.save(args.cloak, cfg)
    torch_cloak = Cloak.load(args.cloak).eval()
    saved = FeatureConfig.from_dict(torch_cloak.meta["feature_config"])
    client = Client(FeatureSettings.from_dict(saved.to_dict()), mel_filterbank(saved),
                    CloakArrays.load(args.cloak), rng=np.random.default_rng(0))
    audio, source = waves(args.files)
    seconds = sum(len(w) for w in audio) / saved.sample_rate
    extractor = LogMel(saved)

    def numpy_client():
        for w in audio:
            client(w, remember=False)

    def torch_pipeline():
        with torch.no_grad():
            for w in audio:
                torch_cloak(torch.from_numpy(extractor(w))[None])

    with threadpool_limits(1):  # one core for NumPy's BLAS too
        numpy_client(), torch_pipeline()  # warm-up
        t_client, t_torch = best_of(3, numpy_client), best_of(3, torch_pipeline)
        bundle = "" if args.bundle is None else _bundle_figures(args.bundle, audio, seconds,
                                                                t_client)
    print(f"{len(audio)} {source} files, {seconds:.0f} s of audio; one thread")
    print(f"client_x_realtime={seconds / t_client:.0f} torch_x_realtime={seconds / t_torch:.0f} "
          f"client_over_torch={t_torch / t_client:.2f} client_ms_per_audio_s="
          f"{1000 * t_client / seconds:.2f}{bundle} files={len(audio)} audio_s={seconds:.1f}")


def _bundle_figures(folder: Path, audio: list[np.ndarray], seconds: float,
                    t_cloak_client: float) -> str:
    """The bundle's client on `audio` (one thread, best of 3 after a warm-up), as key=value
    figures against the cloak client's time."""
    client = Client.from_bundle(folder, seed=0)

    def bundle_client():
        for w in audio:
            client(w, remember=False)

    bundle_client()
    t = best_of(3, bundle_client)
    design = client.__class__.__name__
    return (f" bundle_client={design} bundle_x_realtime={seconds / t:.0f} "
            f"bundle_ms_per_audio_s={1000 * t / seconds:.2f} "
            f"bundle_over_cloak_client={t / t_cloak_client:.1f}")


if __name__ == "__main__":
    main()
