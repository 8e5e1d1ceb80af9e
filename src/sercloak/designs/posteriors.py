"""The `posteriors` design: the device runs f_θ and sends only the emotion probabilities
of each 2 s window (every 0.5 s); the server averages them into the utterance's emotion.

Whatever a service must output, it leaks at least this: the attackers (`lr`,
`gbt` and `gru` of `attacks.sequence`) read the log-probabilities of every
window of an utterance (the attacker holds the client bundle), selected on
their validation speakers. They are fitted on outputs for speakers the model
that made them never trained on: under ``shared``, where f_θ trains on the
attackers' speakers, by cross-fitting (`folds.crossfit_pools`): f_θ trained on
the primary pool alone gives the outputs of the adversary pool's speakers and
f_θ trained on the adversary pool alone those of the primary pool's; the
validation and scored speakers' outputs are the deployed f_θ's, which never
trained on them. Its emotion figure is f_θ's own, so its emotion drop is 0: it
is the floor drawn on the Pareto figure, not a design one would ship for
privacy.

What the service answers may be less than its probabilities (`output`,
issue 30's output-side defences), and the attackers read that answer:
``calibrated`` removes each user's running mean from the window
log-probabilities (the mean of the windows of the user's earlier utterances,
as a running service keeps it; per-user normalisation treats features the
same way; a user's first utterance is answered as it is), and the service's
emotion is the calibrated answer's; ``label`` answers
the utterance's label alone (a one-hot vector), so the emotion is f_θ's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..attacks.base import View
from ..attacks.sequence import SEQUENCE_ATTACKERS
from ..attacks.suite import attacked
from ..baselines import pool_model_file
from ..checkpoint import load_checkpoint
from ..evaluate import summarise, utterance_truth
from ..folds import crossfit_pools, other_pool, training_parts
from ..points import Point
from ..runner import FoldRunner, check_unseen_by
from ..segments import utterance_probabilities


@torch.no_grad()
def window_log_probs(model: torch.nn.Module, data, device, batch_size: int = 256) -> list:
    """Per utterance of a `SegmentSet`, the (windows, classes) log-probabilities of `model`."""
    model.eval()
    out = torch.cat([F.log_softmax(model(data.x[i : i + batch_size].to(device)), dim=-1).cpu()
                     for i in range(0, len(data), batch_size)]).numpy()
    utt = data.utt.numpy()
    return [out[utt == i] for i in range(len(data.utterances))]


def calibrated(view: View) -> list[np.ndarray]:
    """Each utterance's window log-probabilities less the mean of its user's windows so far
    (the user's earlier utterances, in the view's order, as a running service sees them;
    the first is answered as it is), renormalised."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    out = []
    for utterance, windows in zip(view.utterances, view.clean, strict=True):
        speaker = utterance.speaker
        mean = sums[speaker] / counts[speaker] if speaker in counts else 0.0
        shifted = torch.from_numpy(np.asarray(windows - mean, dtype=np.float32))
        out.append(F.log_softmax(shifted, dim=-1).numpy())
        sums[speaker] = sums.get(speaker, 0.0) + windows.sum(axis=0)
        counts[speaker] = counts.get(speaker, 0) + len(windows)
    return out


def labels_only(view: View) -> list[np.ndarray]:
    """Each utterance's label (the argmax of its mean window probability), one-hot."""
    out = []
    for windows in view.clean:
        label = np.zeros((1, windows.shape[1]), dtype=np.float32)
        label[0, int(utterance_probabilities(windows)[1].argmax())] = 1.0
        out.append(label)
    return out


ANSWERS = {"probabilities": lambda view: view.clean, "calibrated": calibrated,
           "label": labels_only}


class PosteriorRunner(FoldRunner):
    """f_θ's window posteriors of one seed and fold, and the attackers that read them."""

    crossfit = ("primary", "adversary")  # the pool models it reads (`folds.crossfit_pools`)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fitted: dict[str, object] = {}
        self._valid: View | None = None

    def sent(self, parts, model: torch.nn.Module | None = None) -> View:
        """What the service answers for every utterance of `parts` (with f_θ, or `model`)."""
        data = self.segments(parts, "emotion", False)
        raw = View(data.utterances, window_log_probs(model or self.f_theta, data, self.device),
                   self.wd.cfg)
        return View(raw.utterances, ANSWERS[self.cfg.output](raw), self.wd.cfg)

    def attacker_training_views(self) -> list[tuple[Path, View]]:
        """The attackers' training outputs, each with the checkpoint of the model that made
        them: the deployed f_θ's on the protocol's attacker speakers, or cross-fitted."""
        train_parts = training_parts(self.cfg.protocol, "gender")[0]
        pools = crossfit_pools(self.cfg.protocol)
        if not pools:
            return [(self.f_theta_file, self.sent(train_parts))]
        views = []
        for pool in self.crossfit:
            file = pool_model_file(self.wd, self.emotion_config, self.cfg.protocol, self.fold,
                                   pool)
            model = load_checkpoint(file, self.wd.cfg, self.device)[0]
            views.append((file, self.sent(pools[other_pool(pool)], model)))
        return views

    def _attackers(self) -> dict[str, object]:
        if not self._fitted:
            views = self.attacker_training_views()
            for file, view in views:
                check_unseen_by(file, view)
            train = View([u for _, v in views for u in v.utterances],
                         [x for _, v in views for x in v.clean], self.wd.cfg)
            self._valid = self.sent(training_parts(self.cfg.protocol, "gender")[1])
            check_unseen_by(self.f_theta_file, self._valid)
            seed = self.cfg.attacks.seed
            self._fitted = {name: attacker(seed=seed).fit(train, self._valid)
                            for name, attacker in SEQUENCE_ATTACKERS.items()}
        return self._fitted

    def score(self, point: Point, part: str = "test") -> dict:
        def compute() -> dict:
            test = self.sent(part)
            attackers = {name: {"informed": attacked(a, test, self._valid)}
                         for name, a in self._attackers().items()}
            return {"emotion": self._service_emotion(part, test), "attackers": attackers,
                    "windows": int(np.sum([len(s) for s in test.observed()]))}

        return self._cached(self.setting(point.name).scores(part), compute)

    def _service_emotion(self, part: str, answered: View) -> dict:
        """The service's emotion: the mean of the window probabilities, f_θ's own (its label
        too); calibrated, the mean of the calibrated ones."""
        if self.cfg.output != "calibrated":
            return self._emotion(self.f_theta, None, part, protected=False)
        data = self.segments(part, "emotion", False)
        pred = [int(utterance_probabilities(w)[1].argmax()) for w in answered.clean]
        return summarise(utterance_truth(data), pred, data.labels,
                         [u.corpus for u in data.utterances],
                         [u.speaker for u in data.utterances])
