"""The `posteriors` design: the device runs f_θ and sends only the emotion probabilities
of each 2 s window (every 0.5 s); the server averages them into the utterance's emotion.

Whatever a service must output, it leaks at least this: the attackers (`lr`,
`gbt` of `attacks.sequence`) read the log-probabilities of every window of an
utterance, fitted on the outputs of the same f_θ on their own speakers (the
attacker holds the client bundle) and selected on their validation speakers.
Its emotion figure is f_θ's own, so its emotion drop is 0: it is the floor
drawn on the Pareto figure, not a design one would ship for privacy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..attacks.base import View
from ..attacks.sequence import SequenceBoosting, SequenceLogistic
from ..attacks.suite import score_unseen
from ..folds import training_parts
from ..runner import FoldRunner, Point

ATTACKERS = (SequenceLogistic, SequenceBoosting)


@torch.no_grad()
def window_log_probs(model: torch.nn.Module, data, device, batch_size: int = 256) -> list:
    """Per utterance of a `SegmentSet`, the (windows, classes) log-probabilities of `model`."""
    model.eval()
    out = torch.cat([F.log_softmax(model(data.x[i : i + batch_size].to(device)), dim=-1).cpu()
                     for i in range(0, len(data), batch_size)]).numpy()
    utt = data.utt.numpy()
    return [out[utt == i] for i in range(len(data.utterances))]


class PosteriorRunner(FoldRunner):
    """f_θ's window posteriors of one seed and fold, and the attackers that read them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fitted: dict[str, object] = {}

    def sent(self, parts) -> View:
        """What the device sends for every utterance of `parts`."""
        data = self.segments(parts, "emotion", False)
        return View(data.utterances, window_log_probs(self.f_theta, data, self.device),
                    self.wd.cfg)

    def _attackers(self) -> dict[str, object]:
        if not self._fitted:
            train_parts, valid_parts = training_parts(self.cfg.protocol, "gender")
            train, valid = self.sent(train_parts), self.sent(valid_parts)
            seed = self.cfg.attacks.seed
            self._fitted = {a.name: a(seed=seed).fit(train, valid) for a in ATTACKERS}
        return self._fitted

    def score(self, point: Point, part: str = "test") -> dict:
        def compute() -> dict:
            test = self.sent(part)
            attackers = {name: {"informed": {**score_unseen(a, test), "chosen": a.chosen}}
                         for name, a in self._attackers().items()}
            # the server's emotion: the mean of the window probabilities, as f_θ's own
            return {"emotion": self._emotion(self.f_theta, None, part, protected=False),
                    "attackers": attackers,
                    "windows": int(np.sum([len(s) for s in test.observed()]))}

        return self._cached(self.setting(point.name).scores(part), compute)
