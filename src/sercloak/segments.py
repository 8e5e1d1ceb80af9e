"""Where the 2 s windows of an utterance start, padding short ones, and how the windows'
answers make the utterance's (NumPy only).

Shared by the training pipeline (`features`, `data`), the experiments and the
torch-free client and service, so all cut utterances into windows and read
their emotion the same way.
"""

from __future__ import annotations

import numpy as np


def segment_starts(n_frames: int, hop: int, length: int = 200) -> list[int]:
    """Start frames of the windows covering an utterance (one if it is short)."""
    if n_frames <= length:
        return [0]
    starts = list(range(0, n_frames - length + 1, hop))
    if starts[-1] + length < n_frames:
        starts.append(n_frames - length)  # one more window flush with the end
    return starts


def pad_frames(feats: np.ndarray, length: int, pad_value: float) -> np.ndarray:
    """(frames, mels) padded at the end with `pad_value` to at least `length` frames."""
    if feats.shape[0] >= length:
        return feats
    pad = np.full((length - feats.shape[0], feats.shape[1]), pad_value, np.float32)
    return np.concatenate([feats, pad])


def cut(feats: np.ndarray, starts: list[int], length: int, pad_value: float) -> np.ndarray:
    """(frames, mels) -> (len(starts), length, mels), padding a short utterance first."""
    feats = pad_frames(feats, length, pad_value)
    return np.stack([feats[s : s + length] for s in starts])


def windows(feats: np.ndarray, hop: int, length: int, pad_value: float) -> np.ndarray:
    """(frames, mels) -> (n_windows, length, mels): every window of `segment_starts`."""
    return cut(feats, segment_starts(feats.shape[0], hop, length), length, pad_value)


def utterance_probabilities(window_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(windows, classes) logits (or log-probabilities) -> each window's probabilities and
    the utterance's (their mean), whose argmax is the utterance's label."""
    logits = np.asarray(window_logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, probs.mean(axis=0)
