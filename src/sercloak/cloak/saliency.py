"""Which features reveal gender more than emotion: the `saliency` suppression mask.

Cloak's own rule masks the features with the largest noise, those the
emotion model needs least; nothing in it asks what reveals gender. Here a
fresh differentiable stats adversary (`adversaries.StatsAdversary`, the twin
of the informed `stats` attacker) is fitted on cloaked training segments, and
each feature is scored by

    score = gender saliency / (emotion saliency + 0.1)

where a saliency is the mean absolute gradient of the model's loss with
respect to that feature of the cloaked input (in standard units of the
feature), each normalised to mean 1. Masking the highest scores removes what
the gender probe leans on and the emotion model does not.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import SegmentSet
from ..device import through_frozen_rnns
from .adversaries import StatsAdversary
from .noise import Cloak

EMOTION_FLOOR = 0.1  # in units of the mean emotion saliency


def fit_stats_adversary(cloak: Cloak, data: SegmentSet, steps: int = 400, lr: float = 3e-3,
                        batch_size: int = 64, seed: int = 0) -> StatsAdversary:
    """A stats adversary trained on cloaked segments of `data` (the cloak fixed).

    A fixed number of steps (not epochs), so a small set trains it as well
    as a large one; weight decay lets bins that carry nothing fade.
    """
    genders = data.relabel("gender").y
    device = cloak.mu.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adversary = StatsAdversary(cloak.feat_mean.cpu(), cloak.feat_std.cpu()).to(device)
        opt = torch.optim.AdamW(adversary.parameters(), lr=lr, weight_decay=1e-2)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            pick = torch.randint(len(data), (batch_size,), generator=gen)
            with torch.no_grad():
                seen = cloak(data.x[pick].to(device))
            loss = F.cross_entropy(adversary(seen), genders[pick].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return adversary.eval()


def saliency(model: torch.nn.Module, cloak: Cloak, data: SegmentSet, targets: torch.Tensor,
             batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """Mean |∂ CE(model(φ(x)), target) / ∂ φ(x)| per feature of the cloak's mask, in
    standard units (the gradient times each mel bin's std)."""
    device = cloak.mu.device
    total = torch.zeros(data.x.shape[1:], device=device, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(data), batch_size):
            with torch.no_grad():
                seen = cloak(data.x[start : start + batch_size].to(device))
            seen.requires_grad_(True)
            with through_frozen_rnns():  # the model stays in eval mode
                loss = F.cross_entropy(model(seen),
                                       targets[start : start + batch_size].to(device),
                                       reduction="sum")
            (grad,) = torch.autograd.grad(loss, seen)
            total += grad.abs().sum(0).double()
    per_cell = (total / len(data) * cloak.feat_std.double()).float()
    return per_cell.mean(0) if cloak.mask.dim() == 1 else per_cell  # per mel bin, or per cell


def gender_over_emotion(cloak: Cloak, emotion_model: torch.nn.Module, data: SegmentSet,
                        seed: int = 0) -> torch.Tensor:
    """The `saliency` mask's scores: gender saliency over emotion saliency, per feature."""
    emotion_model.eval()
    adversary = fit_stats_adversary(cloak, data, seed=seed)
    gender = saliency(adversary, cloak, data, data.relabel("gender").y, seed=seed)
    emotion = saliency(emotion_model, cloak, data, data.y, seed=seed)
    gender, emotion = gender / gender.mean(), emotion / emotion.mean()
    # the floor (a tenth of the mean) keeps bins that neither model uses from dividing
    # a little gradient noise by almost nothing
    return gender / (emotion + EMOTION_FLOOR)
