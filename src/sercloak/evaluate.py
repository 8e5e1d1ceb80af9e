"""Utterance-level evaluation: average segment probabilities, then accuracy and UAR.

UAR (unweighted average recall) is the mean over classes of the fraction of
that class's utterances predicted correctly; classes absent from the truth
are left out of the mean (as sklearn's balanced_accuracy_score does).

The speaker-balanced UAR (`uar_speaker`) gives every speaker the same
weight: each utterance counts 1 / (its speaker's number of utterances) in
the recalls. With 33 speakers of very unequal size (an nEMO speaker has
about five times the utterances of a RAVDESS actor), the pooled UAR is
mostly a few large speakers; the speaker-balanced one asks how well the
model serves a typical user. All figures are in percent.

`summarise` also keeps every utterance's truth, prediction and speaker
(`predictions`), so that figures can be recomputed on resampled speakers
(`results.interval`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .data import SegmentSet

Transform = Callable[[torch.Tensor], torch.Tensor]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def speaker_weights(speakers: np.ndarray) -> np.ndarray:
    """1 / (number of utterances of the utterance's speaker), per utterance."""
    _, index, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    return 1.0 / counts[index]


def recall_mean(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                weights: np.ndarray | None = None) -> float:
    """UAR in percent: mean over the classes present of the (weighted) recall."""
    weights = np.ones(len(y_true)) if weights is None else weights
    total = np.bincount(y_true, weights, minlength=n_classes)
    hits = np.bincount(y_true, weights * (y_true == y_pred), minlength=n_classes)
    present = total > 0
    return 100.0 * float((hits[present] / total[present]).mean()) if present.any() \
        else float("nan")


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
           speakers: np.ndarray | None = None) -> dict:
    """Accuracy, UAR, confusion; with `speakers`, also the speaker-balanced UAR."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    m = confusion(y_true, y_pred, n_classes)
    out = {"acc": 100.0 * np.trace(m) / max(m.sum(), 1),
           "uar": recall_mean(y_true, y_pred, n_classes)}
    if speakers is not None:
        out["uar_speaker"] = recall_mean(y_true, y_pred, n_classes,
                                         speaker_weights(np.asarray(speakers)))
    return {**out, "n": int(m.sum()), "confusion": m.tolist()}


@torch.no_grad()
def predict(model: torch.nn.Module, data: SegmentSet, transform: Transform | None = None,
            batch_size: int = 256, device: torch.device | str = "cpu") -> np.ndarray:
    """Mean segment softmax per utterance: (n_utterances, n_classes)."""
    model.eval()
    probs = []
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size].to(device)
        if transform is not None:
            x = transform(x)
        probs.append(torch.softmax(model(x), dim=-1).cpu())
    seg = torch.cat(probs).double()
    n_utts = len(data.utterances)
    total = torch.zeros(n_utts, seg.shape[1], dtype=torch.float64).index_add_(0, data.utt, seg)
    count = torch.bincount(data.utt, minlength=n_utts).clamp_min(1).unsqueeze(1)
    return (total / count).numpy()


def utterance_truth(data: SegmentSet) -> np.ndarray:
    truth = np.full(len(data.utterances), -1)
    truth[data.utt.numpy()] = data.y.numpy()
    return truth


def summarise(truth: np.ndarray, pred: np.ndarray, labels: tuple[str, ...] | list[str],
              corpora: list[str], speakers: list[str], probs: np.ndarray | None = None) -> dict:
    """Utterance predictions -> accuracy, pooled and speaker-balanced UAR and confusion,
    overall and per corpus, and the predictions themselves (with `probs` of two classes,
    also each utterance's probability of the second as `score`: what a user-level attacker
    pools)."""
    truth, pred = np.asarray(truth, dtype=int), np.asarray(pred, dtype=int)
    corpora, speakers = np.asarray(corpora), np.asarray(speakers)
    n = len(labels)
    predictions = {"speaker": speakers.tolist(), "truth": truth.tolist(), "pred": pred.tolist()}
    if probs is not None and n == 2:
        predictions["score"] = np.round(np.asarray(probs)[:, 1], 4).tolist()
    return {
        "labels": list(labels),
        "overall": scores(truth, pred, n, speakers),
        "per_corpus": {c: scores(truth[corpora == c], pred[corpora == c], n,
                                 speakers[corpora == c])
                       for c in sorted(set(corpora.tolist()))},
        "predictions": predictions,
    }


def evaluate(model: torch.nn.Module, data: SegmentSet, transform: Transform | None = None,
             device: torch.device | str = "cpu") -> dict:
    """Accuracy, UAR (pooled and speaker-balanced) and confusion, overall and per corpus."""
    pred = predict(model, data, transform, device=device).argmax(axis=1)
    return summarise(utterance_truth(data), pred, data.labels,
                     [u.corpus for u in data.utterances], [u.speaker for u in data.utterances])
