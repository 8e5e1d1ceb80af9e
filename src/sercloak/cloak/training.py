"""Training a cloak against a frozen emotion model f_θ, with or without adversaries.

Stage 1, perturbation: learn μ and the noise scales (ρ, and ρ_τ for the
temporal kind) by minimising

    λ·L_c + CE(f_θ(φ(x)), y)   [ + a privacy loss from the gender adversaries ψ ]

Stage 2, suppression (SR > 0): mask SR% of the features and learn only the
values μ_s that replace them, by the same loss without L_c. f_θ stays
frozen, BatchNorm in eval mode, throughout.

The adversarial variants play one of two games (`CloakTrainConfig.game`):

- ``grl`` (the paper's): each ψ sits behind a gradient-reversal layer g_α;
  one joint step trains ψ to find gender and pushes the cloak to hide it.
  With α = 0.1 and ψ's small learning rate, ψ wins: the game is barely played.
- ``minmax``: per batch, every ψ first takes `adversary_steps` steps on the
  cloaked batch (the cloak fixed), then the cloak takes one step that pushes
  every ψ's output towards chance (cross-entropy against the uniform
  gender distribution, which stays bounded, unlike maximising ψ's loss).

In both games the adversaries' weight (α, or the privacy loss's weight) can
ramp up linearly over the first `weight_warmup` of stage 1, so the cloak
first learns what emotion needs. Every epoch records each ψ's accuracy on
the batches it saw: a final accuracy near 100% means the cloak lost its game.

Both stages train on the speakers f_θ trained on (the primary pool's under
the paper's protocol, every non-test speaker under ``shared``): the service
that owns f_θ trains the cloak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..data import SegmentSet
from ..device import through_frozen_rnns
from ..models import CnnRnn, to_chance
from .adversaries import ADVERSARIES, reverse_gradient
from .noise import Cloak

GAMES = ("grl", "minmax")

ADVERSARY_ACCURACY = "adversary_acc_"  # + ψ's family: its accuracy in a training epoch


def adversary_accuracies(epoch: dict) -> dict[str, float]:
    """{family: accuracy (%)} of the adversaries in one epoch's figures of a cloak's
    training history."""
    return {k.removeprefix(ADVERSARY_ACCURACY): v for k, v in epoch.items()
            if k.startswith(ADVERSARY_ACCURACY)}


@dataclass(frozen=True)
class CloakTrainConfig:
    lam: float = 0.1  # weight of L_c (the paper's λ)
    adversarial: bool = False
    game: str = "grl"  # "grl" (the paper's) or "minmax"
    adversaries: tuple[str, ...] = ("cnn",)  # ψ families, see `adversaries.ADVERSARIES`
    adversary_steps: int = 1  # ψ updates per cloak update (minmax)
    adversary_weight: float = 1.0  # weight of the privacy loss (minmax)
    weight_warmup: float = 0.0  # fraction of stage 1 over which α / the weight ramp up
    grl_alpha: float = 0.1
    lr: float = 0.01  # Adam on μ, ρ, μ_s: a few thousand parameters, not a network
    adversary_lr: float = 1e-4
    perturbation_epochs: int = 4
    suppression_epochs: int = 2
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.adversaries) - set(ADVERSARIES)
        if self.game not in GAMES or unknown or not self.adversaries:
            raise ValueError(f"unknown game {self.game!r} or adversaries {sorted(unknown)} "
                             f"(games: {GAMES}; adversaries: {ADVERSARIES})")

    def to_dict(self) -> dict:
        return {**asdict(self), "adversaries": list(self.adversaries)}


def freeze(model: CnnRnn) -> CnnRnn:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class _Stage:
    """One stage's loop: the cloak's parameters, the adversaries, and the running totals."""

    cloak: Cloak
    f_theta: CnnRnn
    adversaries: dict[str, torch.nn.Module]
    params: list[torch.nn.Parameter]
    use_lc: bool
    cfg: CloakTrainConfig
    ramp: bool  # stage 1 ramps the adversaries' weight up; stage 2 uses it in full
    totals: dict = field(default_factory=dict)

    def __post_init__(self):
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.adv_opt = (torch.optim.Adam([p for a in self.adversaries.values()
                                          for p in a.parameters()], lr=self.cfg.adversary_lr)
                        if self.adversaries else None)
        if self.cfg.game == "grl" and self.adversaries:  # one joint step, as the paper
            self.opt.add_param_group({"params": self.adv_opt.param_groups[0]["params"],
                                      "lr": self.cfg.adversary_lr})

    def weight(self, progress: float) -> float:
        """1 (times α or the weight), ramped linearly over the first `weight_warmup`."""
        warm = self.cfg.weight_warmup
        return 1.0 if not self.ramp or warm <= 0 else min(1.0, progress / warm)

    def _count(self, key: str, value: float, n: int) -> None:
        self.totals[key] = self.totals.get(key, 0.0) + value * n

    def _adversary_loss(self, seen: torch.Tensor, genders: torch.Tensor,
                        loss: Callable[[torch.Tensor], torch.Tensor],
                        count: bool) -> torch.Tensor:
        """Sum over the adversaries of `loss(logits)`; with `count`, tallies their accuracy
        (once per batch: on the cloak as it stood before this batch's updates)."""
        total = 0.0
        for name, adversary in self.adversaries.items():
            logits = adversary(seen)
            if count:
                correct = (logits.argmax(-1) == genders).float().mean().item()
                self._count(ADVERSARY_ACCURACY + name, 100.0 * correct, len(genders))
            total = total + loss(logits)
        return total

    def step(self, x: torch.Tensor, y: torch.Tensor, genders: torch.Tensor,
             progress: float) -> None:
        cfg, w, n = self.cfg, self.weight(progress), len(y)
        if self.adversaries and cfg.game == "minmax":
            for k in range(cfg.adversary_steps):  # ψ catches up with the current cloak
                with torch.no_grad():
                    seen = self.cloak(x)
                adv_loss = self._adversary_loss(seen, genders,
                                                lambda lg: F.cross_entropy(lg, genders), k == 0)
                self.adv_opt.zero_grad(set_to_none=True)
                adv_loss.backward()
                self.adv_opt.step()
        cloaked = self.cloak(x)
        with through_frozen_rnns():  # f_θ stays in eval mode; the cloak learns through it
            emotion_ce = F.cross_entropy(self.f_theta(cloaked), y)
        loss = emotion_ce + (cfg.lam * self.cloak.information_loss() if self.use_lc else 0.0)
        if self.adversaries and cfg.game == "grl":
            reversed_ = reverse_gradient(cloaked, cfg.grl_alpha * w)
            gender_ce = self._adversary_loss(reversed_, genders,
                                             lambda lg: F.cross_entropy(lg, genders), True)
            self._count("gender_ce", gender_ce.item(), n)
            loss = loss + gender_ce
        elif self.adversaries:
            privacy = self._adversary_loss(cloaked, genders, to_chance, False)
            self._count("privacy_loss", privacy.item(), n)
            loss = loss + cfg.adversary_weight * w * privacy
        self.opt.zero_grad(set_to_none=True)
        if self.adv_opt is not None:
            self.adv_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._count("loss", loss.item(), n)
        self._count("emotion_ce", emotion_ce.item(), n)


def _run_stage(stage: _Stage, data: SegmentSet, epochs: int, desc: str,
               show_progress: bool) -> list[dict]:
    cfg, cloak = stage.cfg, stage.cloak
    gen = torch.Generator().manual_seed(cfg.seed)
    genders = data.relabel("gender").y
    device = cloak.mu.device
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not show_progress):
        for adversary in stage.adversaries.values():
            adversary.train()
        order = torch.randperm(len(data), generator=gen)
        stage.totals = {}
        for start in range(0, len(order), cfg.batch_size):
            pick = order[start : start + cfg.batch_size]
            stage.step(data.x[pick].to(device), data.y[pick].to(device),
                       genders[pick].to(device), (epoch + start / len(order)) / epochs)
        sigma, tau = cloak.sigma().detach(), cloak.offset_sigma().detach()
        history.append({"epoch": epoch + 1,
                        **{k: v / len(data) for k, v in stage.totals.items()},
                        "sigma_mean": sigma.mean().item(), "sigma_std": sigma.std().item(),
                        "offset_sigma_mean": tau.mean().item()})
    return history


def train_perturbation(cloak: Cloak, f_theta: CnnRnn, data: SegmentSet, cfg: CloakTrainConfig,
                       adversaries: dict[str, torch.nn.Module] | None = None,
                       show_progress: bool = True) -> list[dict]:
    """Stage 1: learn μ and the noise scales (and the adversaries ψ, when given)."""
    torch.manual_seed(cfg.seed)
    freeze(f_theta)
    stage = _Stage(cloak, f_theta, adversaries or {}, cloak.parameters_to_learn(), True, cfg,
                   ramp=True)
    return _run_stage(stage, data, cfg.perturbation_epochs, "cloak: perturbation", show_progress)


def train_suppression(cloak: Cloak, f_theta: CnnRnn, data: SegmentSet, ratio: float,
                      cfg: CloakTrainConfig,
                      adversaries: dict[str, torch.nn.Module] | None = None,
                      show_progress: bool = True, scores: torch.Tensor | None = None
                      ) -> list[dict]:
    """Stage 2: mask `ratio` percent of features (those with the largest `scores`, by
    default the largest noise) and learn their replacement μ_s."""
    torch.manual_seed(cfg.seed)
    freeze(f_theta)
    cloak.suppress(ratio, scores)
    stage = _Stage(cloak, f_theta, adversaries or {}, [cloak.mu_s], False, cfg, ramp=False)
    return _run_stage(stage, data, cfg.suppression_epochs, f"cloak: suppression {ratio:g}%",
                      show_progress)
