"""The server part of a bundle: protected features in, emotion probabilities out (no torch).

`EmotionModel` runs the bundle's ONNX model with onnxruntime on the 2 s
windows of an utterance (every 0.5 s, as evaluation does) and averages their
probabilities for the utterance: a ``spectrogram`` bundle's emotion model cuts
the windows from the cloaked log-mel it receives; an ``embedding`` bundle's
server part reads the (windows, steps, k) sequence the device sent. A
``label`` bundle's service has no model: the device recognised the emotion
and sent its label alone (a one-hot row), which the service checks and
answers as it is.
`check_features`, `check_embedding` and `check_label` are the gates every
request passes: they name what is wrong with an array instead of letting it
reach the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..segments import cut, segment_starts, utterance_probabilities
from .bundle import SERVER_MODEL, BundleError, open_bundle

MIN_FRAMES = 10  # 0.1 s: fewer frames carry no emotion worth a guess
CHUNK_WINDOWS = 32  # windows per model call: 13 s of speech, 3.3 MB of features
# Cloaked features stay far inside these bounds (dB: the -100 dB floor and the loudest
# speech, plus noise of a few standard deviations; standard units: tens at most).
VALUE_LIMITS = {"none": (-400.0, 300.0), "user": (-100.0, 100.0)}


class BadFeatures(ValueError):
    """A feature array the service refuses, with the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def _numbers(x: np.ndarray, ndim: int, shape_words: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise BadFeatures(f"features must be numbers, not {x.dtype}")
    if x.ndim != ndim:
        raise BadFeatures(f"features must be {shape_words} ({ndim} dimensions), not shape "
                          f"{tuple(x.shape)}")
    return x


def _finite_in(x: np.ndarray, low: float, high: float, what: str) -> np.ndarray:
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise BadFeatures(f"features contain {int((~np.isfinite(x)).sum())} NaN or "
                          f"infinite values")
    if x.min() < low or x.max() > high:
        raise BadFeatures(f"feature values span [{x.min():.4g}, {x.max():.4g}], outside the "
                          f"range {what} can take ([{low:g}, {high:g}])")
    return x


def check_embedding(x: np.ndarray, embedding: dict, max_windows: int) -> np.ndarray:
    """(windows, steps, k) float32, finite, in range, not too many, or BadFeatures."""
    x = _numbers(x, 3, "windows × steps × dimensions")
    if x.shape[1:] != (embedding["steps"], embedding["dims"]):
        raise BadFeatures(f"embedding windows are {x.shape[1]} steps × {x.shape[2]} "
                          f"dimensions; this bundle's are {embedding['steps']} × "
                          f"{embedding['dims']}")
    if x.shape[0] < 1:
        raise BadFeatures("no windows")
    if x.shape[0] > max_windows:
        raise BadFeatures(f"too long: {x.shape[0]} windows, at most {max_windows} per "
                          f"request", status=413)
    # tanh keeps the clean embedding in [-1, 1]; the noise stays within 20 of its scales
    bound = 1.0 + 20.0 * embedding["sigma_max"]
    return _finite_in(x, -bound, bound, "this embedding")


def check_label(x: np.ndarray, n_labels: int) -> int:
    """The one label a label bundle's device sends (a 1 × classes one-hot row), or
    BadFeatures."""
    x = _numbers(x, 2, f"one label as a one-hot row (1 × {n_labels})")
    if x.shape != (1, n_labels):
        raise BadFeatures(f"a label bundle's device sends one label as a 1 × {n_labels} "
                          f"one-hot row, not shape {tuple(x.shape)}")
    if not np.isin(x, (0, 1)).all() or x.sum() != 1:
        raise BadFeatures("the label is not one-hot (one 1, the rest 0): refused")
    return int(x.argmax())


def check_features(x: np.ndarray, features: dict, max_frames: int) -> np.ndarray:
    """(frames, n_mels) float32, finite, in range, neither too short nor too long, or
    BadFeatures."""
    x = _numbers(x, 2, "frames × mel bins")
    if x.shape[1] != features["n_mels"]:
        raise BadFeatures(f"features have {x.shape[1]} mel bins; this bundle's have "
                          f"{features['n_mels']}")
    if x.shape[0] < MIN_FRAMES:
        raise BadFeatures(f"too few frames: {x.shape[0]} (at least {MIN_FRAMES})")
    if x.shape[0] > max_frames:
        raise BadFeatures(f"too long: {x.shape[0]} frames, at most {max_frames} per request",
                          status=413)
    return _finite_in(x, *VALUE_LIMITS[features.get("normalise", "none")], "these features")


class EmotionModel:
    """The bundle's server part on whole utterances of protected features, at most
    `max_seconds` of speech each."""

    def __init__(self, bundle: Path | str, threads: int = 1, max_seconds: float = 60.0,
                 trust_key: bytes | None = None):
        import onnxruntime  # loaded here: the client never needs it

        self.bundle = open_bundle(bundle, trust_key)
        self.manifest = self.bundle.manifest
        self.features = f = self.manifest["features"]
        self.labels = self.manifest["labels"]
        self.design = self.manifest["design"]
        self.max_frames = int(max_seconds * f["sample_rate"] / f["hop_length"])
        self.max_windows = max(1, (self.max_frames - f["segment_frames"])
                               // f["test_hop_frames"] + 1)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # many small requests: one thread each
        if self.design not in SERVER_MODEL:
            raise BundleError(f"{self.bundle.folder}: its design {self.design!r} is not one "
                              f"this service runs ({', '.join(SERVER_MODEL)})")
        name = SERVER_MODEL[self.design]
        self.session = None if name is None else onnxruntime.InferenceSession(
            str(self.bundle.path(name)), options, providers=["CPUExecutionProvider"])

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    @property
    def max_values(self) -> int:
        """The most numbers one request may carry (`max_seconds` of what the design
        sends): what the service's body limits must have room for."""
        if self.design == "embedding":
            e = self.manifest["embedding"]
            return self.max_windows * e["steps"] * e["dims"]
        if self.design == "label":
            return len(self.labels)
        return self.max_frames * self.features["n_mels"]

    def _logits(self, sent: np.ndarray) -> tuple[np.ndarray, int]:
        """Logits of every window, and the number of frames the windows cover."""
        f = self.features
        hop, length = f["test_hop_frames"], f["segment_frames"]
        if self.design == "embedding":
            x = check_embedding(sent, self.manifest["embedding"], self.max_windows)
            return self._run("embedding", len(x), lambda a, b: x[a:b]), \
                (len(x) - 1) * hop + length
        x = check_features(sent, f, self.max_frames)
        if f.get("normalise", "none") != "none" and len(x) < length:
            # the floor in the user's units is known only on the device
            raise BadFeatures(f"features in per-user units need at least {length} frames: "
                              f"the client pads short utterances before normalising")
        pad_value = 10.0 * math.log10(f["amin"])  # dB features: as the training pipeline pads
        starts = segment_starts(len(x), hop, length)
        return self._run("features", len(starts),
                         lambda a, b: cut(x, starts[a:b], length, pad_value)), len(x)

    def _run(self, name: str, windows: int, batch) -> np.ndarray:
        """The model on `batch(a, b)` (windows a to b) for at most `CHUNK_WINDOWS` windows
        at a time: what one request holds (its windows and the model's activations, which
        onnxruntime's arena keeps at their largest) stays small whatever its length."""
        return np.concatenate([
            self.session.run(None, {name: batch(a, min(a + CHUNK_WINDOWS, windows))})[0]
            for a in range(0, windows, CHUNK_WINDOWS)])

    def predict(self, sent: np.ndarray) -> dict:
        """Probabilities per 2 s window (every 0.5 s) and for the utterance (their mean); a
        label bundle's: the device's label, no windows."""
        if self.design == "label":
            label = check_label(sent, len(self.labels))
            return {"bundle_id": self.bundle_id, "labels": self.labels, "windows": [],
                    "utterance": {"label": self.labels[label],
                                  "probabilities": {name: float(i == label) for i, name
                                                    in enumerate(self.labels)}}}
        f = self.features
        hop, length = f["test_hop_frames"], f["segment_frames"]
        logits, n_frames = self._logits(sent)
        probs, mean = utterance_probabilities(logits)
        seconds = f["hop_length"] / f["sample_rate"]
        starts = segment_starts(n_frames, hop, length)
        return {
            "bundle_id": self.bundle_id,
            "labels": self.labels,
            "windows": [{"start_s": round(s * seconds, 3),
                         "end_s": round(min(s + length, n_frames) * seconds, 3),
                         "probabilities": dict(zip(self.labels, map(float, p), strict=True))}
                        for s, p in zip(starts, probs, strict=True)],
            "utterance": {"label": self.labels[int(mean.argmax())],
                          "probabilities": dict(zip(self.labels, map(float, mean),
                                                    strict=True))},
        }
