"""The gender adversaries ψ a cloak is trained against, and the gradient-reversal layer.

Two families, both reading cloaked 2 s segments in dB (batch, frames, mels):

- ``cnn``: a fresh CNN+RNN gender network, the paper's ψ;
- ``stats``: a small MLP on each mel bin's mean and standard deviation over
  the segment, in the emotion model's standard units. It is a differentiable
  twin of the informed `stats` attacker (a linear model on utterance
  statistics), the attacker that defeated the paper's cloak: a cloak trained
  against it learns to hide exactly what that probe reads.
"""

from __future__ import annotations

import torch
from torch import nn

from ..corpora import GENDERS
from ..models import PRESETS, CnnRnn

ADVERSARIES = ("cnn", "stats")


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by −α backward (Ganin & Lempitsky)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def reverse_gradient(x: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    return GradientReversal.apply(x, alpha)


class StatsAdversary(nn.Module):
    """Gender from per-bin mean and std over time of standardised features."""

    def __init__(self, feat_mean: torch.Tensor, feat_std: torch.Tensor, hidden: int = 64):
        super().__init__()
        self.register_buffer("feat_mean", feat_mean.detach().clone().float())
        self.register_buffer("feat_std", feat_std.detach().clone().float())
        n_mels = feat_mean.numel()
        self.net = nn.Sequential(nn.Linear(2 * n_mels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, len(GENDERS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feat_mean) / self.feat_std
        return self.net(torch.cat([z.mean(dim=1), z.std(dim=1)], dim=-1))


def new_adversary(f_theta: CnnRnn, family: str = "cnn", preset: str = "light",
                  seed: int = 0) -> nn.Module:
    """A fresh gender adversary ψ of `family`, reading features standardised like f_θ.

    Its initial weights depend on `seed` alone, not on whatever ran before
    in the process (a run that trains the baselines first draws the same ψ
    as one that finds them trained).
    """
    if family not in ADVERSARIES:
        raise ValueError(f"unknown adversary {family!r} (known: {', '.join(ADVERSARIES)})")
    mean, std = f_theta.feat_mean.cpu(), f_theta.feat_std.cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "stats":
            adversary = StatsAdversary(mean, std)
        else:
            adversary = CnnRnn(len(GENDERS), PRESETS[preset])
            adversary.set_normalisation(mean, std)
    return adversary.to(f_theta.feat_mean.device)
