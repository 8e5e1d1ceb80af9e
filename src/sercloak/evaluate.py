"""Utterance-level evaluation: average segment probabilities, then accuracy and UAR.

UAR (unweighted average recall) is the mean over classes of the fraction of
that class's utterances predicted correctly; classes absent from the truth
are left out of the mean (as sklearn's balanced_accuracy_score does).
All figures are in percent.
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


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    m = confusion(np.asarray(y_true), np.asarray(y_pred), n_classes)
    support = m.sum(axis=1)
    recalls = np.diag(m)[support > 0] / support[support > 0]
    return {
        "acc": 100.0 * np.trace(m) / max(m.sum(), 1),
        "uar": 100.0 * float(recalls.mean()) if recalls.size else float("nan"),
        "n": int(m.sum()),
        "confusion": m.tolist(),
    }


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
              corpora: list[str]) -> dict:
    """Utterance predictions -> accuracy, UAR and confusion, overall and per corpus."""
    truth, pred, corpora = np.asarray(truth), np.asarray(pred), np.asarray(corpora)
    n = len(labels)
    return {
        "labels": list(labels),
        "overall": scores(truth, pred, n),
        "per_corpus": {c: scores(truth[corpora == c], pred[corpora == c], n)
                       for c in sorted(set(corpora.tolist()))},
    }


def evaluate(model: torch.nn.Module, data: SegmentSet, transform: Transform | None = None,
             device: torch.device | str = "cpu") -> dict:
    """Accuracy, UAR and confusion matrix, overall and per corpus."""
    pred = predict(model, data, transform, device=device).argmax(axis=1)
    return summarise(utterance_truth(data), pred, data.labels,
                     [u.corpus for u in data.utterances])
