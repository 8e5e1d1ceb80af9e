"""The server part of a bundle: cloaked features in, emotion probabilities out (no torch).

`EmotionModel` runs the bundle's ONNX emotion model with onnxruntime on the
2 s windows of an utterance (every 0.5 s, as evaluation does) and averages
their probabilities for the utterance. `check_features` is the gate every
request passes: it names what is wrong with a feature array instead of
letting it reach the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..segments import segment_starts, windows
from .bundle import read_manifest

MIN_FRAMES = 10  # 0.1 s: fewer frames carry no emotion worth a guess
# Cloaked features stay far inside these bounds (dB: the -100 dB floor and the loudest
# speech, plus noise of a few standard deviations; standard units: tens at most).
VALUE_LIMITS = {"none": (-400.0, 300.0), "user": (-100.0, 100.0)}


class BadFeatures(ValueError):
    """A feature array the service refuses, with the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def check_features(x: np.ndarray, features: dict) -> np.ndarray:
    """(frames, n_mels) float32, finite, in range, long enough, or BadFeatures."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise BadFeatures(f"features must be numbers, not {x.dtype}")
    if x.ndim != 2:
        raise BadFeatures(f"features must be frames × mel bins (2 dimensions), not shape "
                          f"{tuple(x.shape)}")
    if x.shape[1] != features["n_mels"]:
        raise BadFeatures(f"features have {x.shape[1]} mel bins; this bundle's have "
                          f"{features['n_mels']}")
    if x.shape[0] < MIN_FRAMES:
        raise BadFeatures(f"too few frames: {x.shape[0]} (at least {MIN_FRAMES})")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise BadFeatures(f"features contain {int((~np.isfinite(x)).sum())} NaN or "
                          f"infinite values")
    low, high = VALUE_LIMITS[features.get("normalise", "none")]
    if x.min() < low or x.max() > high:
        raise BadFeatures(f"feature values span [{x.min():.4g}, {x.max():.4g}], outside the "
                          f"range these features can take ([{low:g}, {high:g}])")
    return x


class EmotionModel:
    """The bundle's emotion model on whole utterances of cloaked features."""

    def __init__(self, bundle: Path | str, threads: int = 1):
        import onnxruntime  # loaded here: the client never needs it

        self.bundle = Path(bundle)
        self.manifest = read_manifest(self.bundle)
        self.features = self.manifest["features"]
        self.labels = self.manifest["labels"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # many small requests: one thread each
        self.session = onnxruntime.InferenceSession(
            str(self.bundle / "server" / "emotion.onnx"), options,
            providers=["CPUExecutionProvider"])

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    def predict(self, feats: np.ndarray) -> dict:
        """Probabilities per 2 s window (every 0.5 s) and for the utterance (their mean)."""
        f = self.features
        x = check_features(feats, f)
        hop, length = f["test_hop_frames"], f["segment_frames"]
        if f.get("normalise", "none") != "none" and len(x) < length:
            # the floor in the user's units is known only on the device
            raise BadFeatures(f"features in per-user units need at least {length} frames: "
                              f"the client pads short utterances before normalising")
        pad_value = 10.0 * math.log10(f["amin"])  # dB features: as the training pipeline pads
        logits = self.session.run(None, {"features": windows(x, hop, length, pad_value)})[0]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        seconds = f["hop_length"] / f["sample_rate"]
        starts = segment_starts(len(x), hop, length)
        mean = probs.mean(axis=0)
        return {
            "bundle_id": self.bundle_id,
            "labels": self.labels,
            "windows": [{"start_s": round(s * seconds, 3),
                         "end_s": round(min(s + length, len(x)) * seconds, 3),
                         "probabilities": dict(zip(self.labels, map(float, p), strict=True))}
                        for s, p in zip(starts, probs, strict=True)],
            "utterance": {"label": self.labels[int(mean.argmax())],
                          "probabilities": dict(zip(self.labels, map(float, mean),
                                                    strict=True))},
        }
