"""The split network's training: its settings (`SplitConfig`), then the min–max game against
its adversaries and the server part's adaptation (`train_split`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ...cloak.training import to_chance
from ...data import SegmentSet, balanced_index
from ...models import CnnRnn
from .network import SplitNet, StatsAdversary, StepAdversary, conv_maps


@dataclass(frozen=True)
class SplitConfig:
    dims: tuple[int, ...] = (8, 16, 32)  # k, chosen on validation speakers
    epochs: int = 8  # the min–max game
    adapt_epochs: int = 3  # the server part alone, on noisy embeddings
    lr: float = 1e-3
    adversary_lr: float = 1e-3
    adversary_steps: int = 2
    adversary_weight: float = 1.0
    noise_weight: float = 0.05
    batch_size: int = 64
    rnn_hidden: int = 64
    draws: int = 2  # noise draws per training utterance for the attackers
    seed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "dims": list(self.dims)}


def train_split(f_theta: CnnRnn, data: SegmentSet, dims: int, cfg: SplitConfig,
                device, show_progress: bool = False) -> tuple[SplitNet, list[dict]]:
    """The min–max game on `data` (emotion training segments), then the server part's
    adaptation; returns the network and each epoch's figures."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = SplitNet(f_theta, dims, len(data.labels), cfg.rnn_hidden).to(device)
    maps = conv_maps(net.front, data, device)
    genders = data.relabel("gender").y
    adversaries = [StepAdversary(dims).to(device), StatsAdversary(dims).to(device)]
    adv_opts = [torch.optim.Adam(a.parameters(), lr=cfg.adversary_lr) for a in adversaries]
    trained = [net.front.project.weight, net.front.project.bias, net.log_sigma,
               *net.back.parameters()]
    opt = torch.optim.Adam(trained, lr=cfg.lr)
    back_opt = torch.optim.Adam(net.back.parameters(), lr=cfg.lr)  # the adaptation's
    history = []
    for epoch in tqdm(range(cfg.epochs + cfg.adapt_epochs), desc=f"split net k={dims}",
                      unit="epoch", disable=not show_progress):
        game = epoch < cfg.epochs  # then the server part adapts alone
        index, _ = balanced_index(data, "emotion", gen)
        order = index[torch.randperm(len(index), generator=gen)]
        totals = {"emotion_ce": 0.0, "adversary_acc": 0.0}
        for batch in order.split(cfg.batch_size):
            m, y, g = maps[batch].to(device), data.y[batch].to(device), genders[batch].to(device)
            if game:
                with torch.no_grad():
                    z = net.noisy(net.front.embed(m))
                for adversary, adv_opt in zip(adversaries, adv_opts, strict=True):
                    for _ in range(cfg.adversary_steps):
                        loss = F.cross_entropy(adversary(z), g)
                        adv_opt.zero_grad()
                        loss.backward()
                        adv_opt.step()
                totals["adversary_acc"] += float(np.mean(
                    [(a(z).argmax(1) == g).float().mean().item() for a in adversaries]))
                z = net.noisy(net.front.embed(m))
                logits = net.back(z)
                privacy = sum(to_chance(a(z)) for a in adversaries)
                loss = (F.cross_entropy(logits, y) + cfg.adversary_weight * privacy
                        - cfg.noise_weight * net.log_sigma.mean())
            else:  # the device part is fixed: only the server part learns
                with torch.no_grad():
                    z = net.noisy(net.front.embed(m))
                logits = net.back(z)
                loss = F.cross_entropy(logits, y)
            step = opt if game else back_opt
            step.zero_grad()
            loss.backward()
            step.step()
            totals["emotion_ce"] += F.cross_entropy(logits.detach(), y).item()
        n = max(1, len(order.split(cfg.batch_size)))
        history.append({"epoch": epoch + 1, "stage": "game" if game else "adapt",
                        "emotion_ce": totals["emotion_ce"] / n,
                        "adversary_acc": 100 * totals["adversary_acc"] / n if game else None,
                        "sigma_mean": net.sigma().mean().item()})
    return net.eval(), history


