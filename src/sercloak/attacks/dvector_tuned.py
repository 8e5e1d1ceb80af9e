"""`dvector_ft`: the speaker encoder itself retrained on protected speech (informed only).

The informed `dvector` attacker refits only a logistic regression on top of
an encoder trained on clean speech. VoicePrivacy's semi-informed attacker
retrains its speaker model on anonymised speech; so does this one: the
encoder's last LSTM layer and its projection are fine-tuned, with a new
gender head on the (unit-norm) embedding, on the protected features of the
attacker's training speakers, up to `epochs` epochs, stopping after `patience`
epochs without a better UAR on its protected validation speakers, whose best
epoch is kept. Its embeddings (`embed`, before the gender head) also link
speakers: the semi-informed speaker EER. The two lower LSTM layers stay frozen, so their output
is computed once per utterance (kept in half precision) and every epoch runs
only the top layer. Everything runs on the encoder's device (`--device`); the
batches are drawn on the CPU, so they do not depend on it.

Like `dvector`, training and validation views keep at most
`max_per_speaker` utterances per speaker (test views are never cut); each
1.6 s partial is a training example labelled with its speaker's gender, and
an utterance's probabilities are the mean over its partials.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..corpora import GENDERS
from ..evaluate import scores
from .base import View
from .speaker_encoder import MelConverter, SpeakerEncoder, cut_partials


def split_encoder(encoder: SpeakerEncoder) -> tuple[nn.LSTM, nn.LSTM]:
    """The encoder's LSTM as its two lower layers (frozen) and its top layer (a copy)."""
    lstm = encoder.lstm
    lower = nn.LSTM(lstm.input_size, lstm.hidden_size, lstm.num_layers - 1, batch_first=True)
    top = nn.LSTM(lstm.hidden_size, lstm.hidden_size, 1, batch_first=True)
    state = lstm.state_dict()
    last = lstm.num_layers - 1
    lower.load_state_dict({k: v for k, v in state.items() if not k.endswith(f"_l{last}")})
    top.load_state_dict({k.replace(f"_l{last}", "_l0"): v for k, v in state.items()
                         if k.endswith(f"_l{last}")})
    for p in lower.parameters():
        p.requires_grad_(False)
    return lower.eval(), top


class TunedHead(nn.Module):
    """Top LSTM layer -> projection -> ReLU -> unit norm -> gender logits."""

    def __init__(self, encoder: SpeakerEncoder, top: nn.LSTM):
        super().__init__()
        self.top = top
        self.linear = copy.deepcopy(encoder.linear)
        self.gender = nn.Linear(encoder.linear.out_features, len(GENDERS))

    def embedding(self, lower_out: torch.Tensor) -> torch.Tensor:
        """The retrained encoder's unit-norm embedding of each partial."""
        _, (hidden, _) = self.top(lower_out)
        embedding = torch.relu(self.linear(hidden[-1]))
        return embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, lower_out: torch.Tensor) -> torch.Tensor:
        # unit vectors scaled so logits can be decisive
        return self.gender(self.embedding(lower_out) * 10.0)


class TunedEncoderAttacker:
    name = "dvector_ft"

    def __init__(self, encoder: SpeakerEncoder, max_per_speaker: int | None = 60,
                 epochs: int = 12, lr: float = 1e-4, head_lr: float = 1e-3,
                 batch_size: int = 64, patience: int = 3, seed: int = 0):
        self.encoder, self.max_per_speaker, self.epochs = encoder, max_per_speaker, epochs
        self.patience = patience
        self.lr, self.head_lr, self.batch_size, self.seed = lr, head_lr, batch_size, seed
        self.device = encoder.linear.weight.device  # the encoder's (`--device`)
        self.lower = split_encoder(encoder)[0].to(self.device)

    @torch.no_grad()
    def _lower(self, view: View) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen lower layers' output of every partial of every observed utterance (half
        precision), and which observation each partial is of; computed once per view."""
        def make():
            converter = MelConverter(view.cfg)
            partials = [cut_partials(converter(f)) for f in view.observed()]
            owner = torch.from_numpy(np.repeat(np.arange(len(partials)),
                                               [len(p) for p in partials]))
            stacked = torch.from_numpy(np.concatenate(partials))
            out = torch.cat([self.lower(stacked[i : i + 128].to(self.device))[0].half()
                             for i in range(0, len(stacked), 128)])
            return out, owner
        return view.derived(("dvector_ft_lower", id(self.encoder)), make)

    @torch.no_grad()
    def _proba(self, head: TunedHead, view: View) -> np.ndarray:
        lower, owner = self._lower(view)
        head.eval()
        probs = torch.cat([F.softmax(head(lower[i : i + 256].float()), dim=-1).cpu()
                           for i in range(0, len(lower), 256)]).double()
        n = len(view.observed())
        total = torch.zeros(n, len(GENDERS), dtype=torch.float64).index_add_(0, owner, probs)
        per_draw = (total / torch.bincount(owner, minlength=n).clamp_min(1).unsqueeze(1))
        return per_draw.reshape(-1, view.draws, len(GENDERS)).mean(dim=1).numpy()

    def fit(self, train: View, valid: View) -> TunedEncoderAttacker:
        train = train.subset(self.max_per_speaker, self.seed)
        valid = valid.subset(self.max_per_speaker, self.seed)
        lower, owner = self._lower(train)
        y = torch.from_numpy(train.genders(per_draw=True))[owner].to(self.device)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        # split here, after seeding, not once in __init__: building the LSTMs draws from
        # the seeded generator, so the gender layer's initial weights (and every published
        # dvector_ft figure) follow from this order
        _, top = split_encoder(self.encoder)
        head = TunedHead(self.encoder, top).to(self.device)
        opt = torch.optim.Adam([{"params": [*head.top.parameters(), *head.linear.parameters()],
                                 "lr": self.lr},
                                {"params": head.gender.parameters(), "lr": self.head_lr}])
        weight = (len(y) / (len(GENDERS) * torch.bincount(y, minlength=2).clamp_min(1))).float()
        best = None
        for epoch in range(1, self.epochs + 1):
            head.train()
            for batch in torch.randperm(len(y), generator=gen).split(self.batch_size):
                batch = batch.to(self.device)
                loss = F.cross_entropy(head(lower[batch].float()), y[batch], weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
            uar = scores(valid.genders(), self._proba(head, valid).argmax(1), len(GENDERS))["uar"]
            if best is None or uar > best[1]:
                best = (copy.deepcopy(head.state_dict()), uar, epoch)
            elif epoch - best[2] >= self.patience:
                break
        head.load_state_dict(best[0])
        self.head = head.eval()
        self.chosen = {"epoch": best[2], "valid_uar": round(best[1], 2),
                       "train_utterances": len(train)}
        self.fitted_on = train.speakers | valid.speakers
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self._proba(self.head, test)

    @torch.no_grad()
    def embed(self, view: View) -> np.ndarray:
        """(n_observed, dims): each observed utterance's unit-norm retrained embedding (the
        mean of its partials', normalised again, as d-vectors are made)."""
        lower, owner = self._lower(view)
        parts = torch.cat([self.head.embedding(lower[i : i + 256].float()).cpu()
                           for i in range(0, len(lower), 256)]).double()
        total = torch.zeros(len(view.observed()), parts.shape[1], dtype=torch.float64)
        total.index_add_(0, owner, parts)
        return (total / total.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()
