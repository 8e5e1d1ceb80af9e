"""Training a cloak against a frozen emotion model f_θ, with or without an adversary.

Stage 1, perturbation: learn μ and ρ by minimising

    λ·L_c + CE(f_θ(φ(x)), y)   [ + CE(ψ(g_α(φ(x))), gender) ]

Stage 2, suppression (SR > 0): mask the SR% of features with the largest σ
and learn only the values μ_s that replace them, by the same loss without
L_c (σ no longer changes). In the adversarial variant a fresh gender network
ψ sits behind a gradient-reversal layer g_α: ψ learns to find gender in the
cloaked features while the reversed gradient pushes μ, ρ (then μ_s) to hide
it. f_θ stays frozen, BatchNorm in eval mode, throughout.

Both stages train on the primary pool's training speakers: the service that
owns f_θ trains the cloak; attackers never see these speakers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F
from tqdm import tqdm

from .cloak import Cloak, reverse_gradient
from .corpora import GENDERS
from .data import SegmentSet
from .models import PRESETS, CnnRnn


@dataclass(frozen=True)
class CloakTrainConfig:
    lam: float = 0.1  # weight of L_c (the paper's λ)
    adversarial: bool = False
    grl_alpha: float = 0.1
    lr: float = 0.01  # Adam on μ, ρ, μ_s: a few thousand parameters, not a network
    adversary_lr: float = 1e-4
    perturbation_epochs: int = 4
    suppression_epochs: int = 2
    batch_size: int = 32
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def freeze(model: CnnRnn) -> CnnRnn:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _run_stage(cloak: Cloak, f_theta: CnnRnn, adversary: CnnRnn | None, data: SegmentSet,
               params: list[torch.nn.Parameter], use_lc: bool, epochs: int,
               cfg: CloakTrainConfig, desc: str, show_progress: bool) -> list[dict]:
    groups = [{"params": params, "lr": cfg.lr}]
    if adversary is not None:
        groups.append({"params": list(adversary.parameters()), "lr": cfg.adversary_lr})
    opt = torch.optim.Adam(groups)
    gen = torch.Generator().manual_seed(cfg.seed)
    genders = data.relabel("gender").y
    device = cloak.mu.device
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not show_progress):
        if adversary is not None:
            adversary.train()
        order = torch.randperm(len(data), generator=gen)
        totals = {"loss": 0.0, "emotion_ce": 0.0, "gender_ce": 0.0}
        for start in range(0, len(order), cfg.batch_size):
            pick = order[start : start + cfg.batch_size]
            x, y = data.x[pick].to(device), data.y[pick].to(device)
            cloaked = cloak(x)
            emotion_ce = F.cross_entropy(f_theta(cloaked), y)
            loss = emotion_ce + (cfg.lam * cloak.information_loss() if use_lc else 0.0)
            if adversary is not None:
                logits = adversary(reverse_gradient(cloaked, cfg.grl_alpha))
                gender_ce = F.cross_entropy(logits, genders[pick].to(device))
                loss = loss + gender_ce
                totals["gender_ce"] += gender_ce.item() * len(pick)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            totals["loss"] += loss.item() * len(pick)
            totals["emotion_ce"] += emotion_ce.item() * len(pick)
        sigma, tau = cloak.sigma().detach(), cloak.offset_sigma().detach()
        history.append({"epoch": epoch + 1, **{k: v / len(data) for k, v in totals.items()},
                        "sigma_mean": sigma.mean().item(), "sigma_std": sigma.std().item(),
                        "offset_sigma_mean": tau.mean().item()})
    return history


def new_adversary(f_theta: CnnRnn, preset: str = "light", seed: int = 0) -> CnnRnn:
    """A fresh gender network ψ, reading features standardised like f_θ.

    Its initial weights depend on `seed` alone, not on whatever ran before
    in the process (a run that trains the baselines first draws the same ψ
    as one that finds them trained).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adversary = CnnRnn(len(GENDERS), PRESETS[preset])
    adversary.set_normalisation(f_theta.feat_mean.cpu(), f_theta.feat_std.cpu())
    return adversary.to(f_theta.feat_mean.device)


def train_perturbation(cloak: Cloak, f_theta: CnnRnn, data: SegmentSet, cfg: CloakTrainConfig,
                       adversary: CnnRnn | None = None, show_progress: bool = True) -> list[dict]:
    """Stage 1: learn μ and ρ (ρ_τ too for the temporal kind; ψ when adversarial)."""
    torch.manual_seed(cfg.seed)
    freeze(f_theta)
    return _run_stage(cloak, f_theta, adversary, data, cloak.parameters_to_learn(), True,
                      cfg.perturbation_epochs, cfg, "cloak: perturbation", show_progress)


def train_suppression(cloak: Cloak, f_theta: CnnRnn, data: SegmentSet, ratio: float,
                      cfg: CloakTrainConfig, adversary: CnnRnn | None = None,
                      show_progress: bool = True) -> list[dict]:
    """Stage 2: mask `ratio` percent of features and learn their replacement μ_s."""
    torch.manual_seed(cfg.seed)
    freeze(f_theta)
    cloak.suppress(ratio)
    return _run_stage(cloak, f_theta, adversary, data, [cloak.mu_s], False,
                      cfg.suppression_epochs, cfg, f"cloak: suppression {ratio:g}%",
                      show_progress)
