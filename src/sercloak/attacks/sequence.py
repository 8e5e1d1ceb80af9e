"""Attackers on what a non-spectrogram design sends: a sequence of vectors per utterance.

The `posteriors` design sends f_θ's emotion log-probabilities of every 2 s
window, (windows, 4); the `embedding` design sends k-dimensional vectors of
every time step of every window, (windows, steps, k). Their attackers are
always *informed*: fitted on what the design sends for their own speakers
(the attacker holds the client bundle) and selected on their validation
speakers, by UAR:

- `lr`: a standardised logistic regression (balanced classes) on utterance
  statistics of the sequence: mean, standard deviation, minimum and maximum
  of every dimension over all steps, and the log number of steps; C chosen;
- `gbt`: gradient-boosted trees (scikit-learn's histogram-based booster,
  balanced classes) on the same statistics; depth and learning rate chosen;
- `gru`: a small bidirectional GRU over each window's steps, averaged over
  the window, window probabilities averaged per utterance (3-D sequences
  only); the epoch chosen.

They read a `base.View` whose features are the sequences (`View.clean`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn import functional as F

from ..corpora import GENDERS
from ..evaluate import scores
from .base import View
from .stats import select_logistic


def sequence_stats(sequence: np.ndarray) -> np.ndarray:
    """(steps, dims) or (windows, steps, dims) -> (4 * dims + 1,) utterance statistics."""
    x = np.asarray(sequence, dtype=np.float64).reshape(-1, np.shape(sequence)[-1])
    return np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0),
                           [np.log(len(x))]]).astype(np.float32)


def view_sequence_stats(view: View) -> np.ndarray:
    return view.derived("sequence_stats",
                        lambda: np.stack([sequence_stats(s) for s in view.observed()]))


class SequenceLogistic:
    name = "lr"

    def __init__(self, cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0), seed: int = 0):
        self.cs, self.seed = cs, seed

    def fit(self, train: View, valid: View) -> SequenceLogistic:
        self.model, c, uar = select_logistic(view_sequence_stats(train), train.genders(),
                                             view_sequence_stats(valid), valid.genders(),
                                             self.cs, self.seed)
        self.chosen = {"C": c, "valid_uar": round(uar, 2)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.model.predict_proba(view_sequence_stats(test))


class SequenceBoosting:
    name = "gbt"

    def __init__(self, depths: tuple[int, ...] = (2, 4), rates: tuple[float, ...] = (0.05, 0.2),
                 seed: int = 0):
        self.grid = [(d, r) for d in depths for r in rates]
        self.seed = seed

    def fit(self, train: View, valid: View) -> SequenceBoosting:
        x_train, y_train = view_sequence_stats(train), train.genders()
        x_valid, y_valid = view_sequence_stats(valid), valid.genders()
        best = None
        # one thread: on a few thousand rows OpenMP's threads cost more than they give (6x
        # slower on 2 busy cores, measured)
        with threadpool_limits(1):
            for depth, rate in self.grid:
                model = HistGradientBoostingClassifier(
                    max_depth=depth, learning_rate=rate, max_iter=200, class_weight="balanced",
                    random_state=self.seed).fit(x_train, y_train)
                uar = scores(y_valid, model.predict(x_valid), len(GENDERS))["uar"]
                if best is None or uar > best[3]:
                    best = (model, depth, rate, uar)
        self.model = best[0]
        self.chosen = {"max_depth": best[1], "learning_rate": best[2],
                       "valid_uar": round(best[3], 2)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        with threadpool_limits(1):
            return self.model.predict_proba(view_sequence_stats(test))


class WindowGru(nn.Module):
    """(batch, steps, dims) -> (batch, 2) gender logits."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.scale = nn.LayerNorm(dims)
        self.rnn = nn.GRU(dims, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(GENDERS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.scale(x))
        return self.out(h.mean(dim=1))


def _windows(view: View) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of every observed sequence, and the utterance (observation) it is of."""
    sequences = view.observed()
    owner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    return torch.from_numpy(np.concatenate(sequences).astype(np.float32)), torch.from_numpy(owner)


class SequenceGru:
    name = "gru"

    def __init__(self, epochs: int = 8, lr: float = 3e-3, batch_size: int = 64, seed: int = 0):
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed

    def _utterance_proba(self, model: nn.Module, view: View) -> np.ndarray:
        x, owner = _windows(view)
        model.eval()
        with torch.no_grad():
            probs = torch.cat([F.softmax(model(x[i : i + 1024]), dim=-1)
                               for i in range(0, len(x), 1024)]).double()
        total = torch.zeros(len(view.observed()), 2, dtype=torch.float64).index_add_(
            0, owner, probs)
        return (total / torch.bincount(owner).clamp_min(1).unsqueeze(1)).numpy()

    def fit(self, train: View, valid: View) -> SequenceGru:
        x, owner = _windows(train)
        y = torch.from_numpy(train.genders())[owner]
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        model = WindowGru(x.shape[-1])
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        weight = (len(y) / (2 * torch.bincount(y, minlength=2).clamp_min(1))).float()
        best = None
        for epoch in range(1, self.epochs + 1):
            model.train()
            for batch in torch.randperm(len(x), generator=gen).split(self.batch_size):
                loss = F.cross_entropy(model(x[batch]), y[batch], weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
            uar = scores(valid.genders(), self._utterance_proba(model, valid).argmax(1),
                         len(GENDERS))["uar"]
            if best is None or uar > best[1]:
                best = ({k: v.clone() for k, v in model.state_dict().items()}, uar, epoch)
        model.load_state_dict(best[0])
        self.model = model.eval()
        self.chosen = {"epoch": best[2], "valid_uar": round(best[1], 2)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self._utterance_proba(self.model, test)


SEQUENCE_ATTACKERS = {"lr": SequenceLogistic, "gbt": SequenceBoosting, "gru": SequenceGru}
