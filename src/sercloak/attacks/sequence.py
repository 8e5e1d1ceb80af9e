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
  the window, window probabilities averaged per utterance (3-D sequences);
  over the whole sequence of windows of a 2-D sequence; the epoch chosen.

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
    """(batch, steps, dims) sequences of `lengths` steps -> (batch, 2) gender logits."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.scale = nn.LayerNorm(dims)
        self.rnn = nn.GRU(dims, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(GENDERS))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if bool((lengths == x.shape[1]).all()):  # windows of one length: no packing needed
            return self.out(self.rnn(self.scale(x))[0].mean(dim=1))
        packed = nn.utils.rnn.pack_padded_sequence(self.scale(x), lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        return self.out(h.sum(dim=1) / lengths.unsqueeze(1).to(h.dtype))


def _items(view: View) -> tuple[list[torch.Tensor], torch.Tensor]:
    """What the GRU reads, and the observed utterance each item is of: every window of a
    3-D sequence (windows, steps, dims), or a whole 2-D sequence (windows, dims)."""
    sequences = view.observed()
    items, owner = [], []
    for i, s in enumerate(sequences):
        s = torch.from_numpy(np.asarray(s, dtype=np.float32))
        parts = list(s) if s.dim() == 3 else [s]
        items += parts
        owner += [i] * len(parts)
    return items, torch.tensor(owner)


def _batch(items: list[torch.Tensor], index) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = [items[i] for i in index]
    return (nn.utils.rnn.pad_sequence(chosen, batch_first=True),
            torch.tensor([len(c) for c in chosen]))


class SequenceGru:
    name = "gru"

    def __init__(self, epochs: int = 8, lr: float = 3e-3, batch_size: int = 64, seed: int = 0):
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed

    def _utterance_proba(self, model: nn.Module, view: View) -> np.ndarray:
        items, owner = _items(view)
        model.eval()
        with torch.no_grad():
            probs = torch.cat([F.softmax(model(*_batch(items, range(i, min(i + 1024,
                                                                          len(items))))),
                                         dim=-1)
                               for i in range(0, len(items), 1024)]).double()
        total = torch.zeros(len(view.observed()), 2, dtype=torch.float64).index_add_(
            0, owner, probs)
        return (total / torch.bincount(owner).clamp_min(1).unsqueeze(1)).numpy()

    def fit(self, train: View, valid: View) -> SequenceGru:
        items, owner = _items(train)
        y = torch.from_numpy(train.genders())[owner]
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        model = WindowGru(items[0].shape[-1])
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        weight = (len(y) / (2 * torch.bincount(y, minlength=2).clamp_min(1))).float()
        best = None
        for epoch in range(1, self.epochs + 1):
            model.train()
            for batch in torch.randperm(len(items), generator=gen).split(self.batch_size):
                loss = F.cross_entropy(model(*_batch(items, batch.tolist())), y[batch],
                                       weight=weight)
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
