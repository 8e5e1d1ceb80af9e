"""The split network's training: its settings (`SplitConfig`), then the min–max game against
its adversaries and the server part's adaptation (`train_split`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ...corpora import GENDERS
from ...data import SegmentSet, balanced_index
from ...models import CnnRnn, to_chance
from ...train import OutputAdversary
from .network import (
    ADVERSARIES,
    WINDOW_ADVERSARIES,
    SplitNet,
    UtteranceAdversary,
    conv_maps,
)

# the game's named adversary sets (`--split-game`): (adversaries, refresh_every)
GAMES = {"window": (("step", "stats"), 0),  # issue 18's: what one 2 s window shows
         "utterance": (("step", "stats", "utterance"), 0),  # + whole-utterance statistics
         "gru": (("step", "stats", "gru"), 0),  # + a GRU over each window's steps
         "refresh": (("step", "stats"), 2),  # fresh adversaries every 2 epochs
         "attackers": (("step", "stats", "gru", "utterance"), 2)}  # all of these


DIMS = (8, 16, 32)  # the default grid of k (another grid is part of a method's name)


@dataclass(frozen=True)
class SplitConfig:
    dims: tuple[int, ...] = DIMS  # k, chosen on validation speakers
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
    # the game's adversaries (`network.ADVERSARIES`): per window an MLP per step ("step"),
    # statistics ("stats") or a GRU over the steps ("gru"); "utterance": statistics over
    # all windows of an utterance, as the lr and gbt attackers read them
    adversaries: tuple[str, ...] = ("step", "stats")
    utterance_batch: int = 16  # utterances per step of the "utterance" adversary
    refresh_every: int = 0  # > 0: fresh adversaries every this many game epochs
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.adversaries) - set(ADVERSARIES)
        if unknown or not self.adversaries:
            raise ValueError(f"unknown split-network adversaries {sorted(unknown)} (known: "
                             f"{', '.join(ADVERSARIES)})")

    def to_dict(self) -> dict:
        return {**asdict(self), "dims": list(self.dims), "adversaries": list(self.adversaries)}

    @property
    def game(self) -> str:
        """The name of its adversary set in `GAMES` ("custom" when none)."""
        return next((name for name, (adversaries, refresh) in GAMES.items()
                     if adversaries == self.adversaries and refresh == self.refresh_every),
                    "custom")

    @classmethod
    def playing(cls, game: str, **settings) -> SplitConfig:
        """The configuration of a named game (`GAMES`)."""
        if game not in GAMES:
            raise ValueError(f"unknown split-network game {game!r} (known: {', '.join(GAMES)})")
        adversaries, refresh = GAMES[game]
        return cls(adversaries=adversaries, refresh_every=refresh, **settings)


class _Game:
    """The adversaries of one split network's game, their optimisers, and their losses."""

    def __init__(self, cfg: SplitConfig, dims: int, data: SegmentSet, device):
        self.cfg, self.dims, self.device = cfg, dims, device
        utt = data.utt.numpy()
        self.windows_of = [np.flatnonzero(utt == i) for i in range(len(data.utterances))]
        self.utterance_genders = torch.tensor(
            [GENDERS.index(u.gender) for u in data.utterances], device=device)
        self.renew()

    def renew(self) -> None:
        """Fresh adversaries (drawn from torch's seeded generator)."""
        self.window = [WINDOW_ADVERSARIES[name](self.dims).to(self.device)
                       for name in self.cfg.adversaries if name in WINDOW_ADVERSARIES]
        self.utterance = (UtteranceAdversary(self.dims).to(self.device)
                          if "utterance" in self.cfg.adversaries else None)
        every = self.window + ([self.utterance] if self.utterance is not None else [])
        self.opts = [torch.optim.Adam(a.parameters(), lr=self.cfg.adversary_lr) for a in every]

    def utterance_sample(self, gen: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.windows_of), generator=gen)[: self.cfg.utterance_batch]

    def utterance_embeddings(self, net: SplitNet, maps: torch.Tensor,
                             picked: torch.Tensor) -> list[torch.Tensor]:
        """Each picked utterance's noisy embedding, all its windows' steps as (steps, k)."""
        return [net.noisy(net.front.embed(maps[self.windows_of[i]].to(self.device)))
                .reshape(-1, self.dims) for i in picked.tolist()]

    def train_adversaries(self, z: torch.Tensor, g: torch.Tensor,
                          utterances: list[torch.Tensor] | None,
                          picked: torch.Tensor | None) -> float:
        """`adversary_steps` steps of every adversary on detached embeddings; their mean
        accuracy on this batch."""
        seen = [(a, z, g) for a in self.window]
        if self.utterance is not None:
            seen.append((self.utterance, [u.detach() for u in utterances],
                         self.utterance_genders[picked]))
        for (adversary, x, truth), opt in zip(seen, self.opts, strict=True):
            for _ in range(self.cfg.adversary_steps):
                loss = F.cross_entropy(adversary(x), truth)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return float(np.mean([(a(x).argmax(1) == truth).float().mean().item()
                              for a, x, truth in seen]))

    def privacy(self, z: torch.Tensor, utterances: list[torch.Tensor] | None) -> torch.Tensor:
        loss = sum(to_chance(a(z)) for a in self.window)
        if self.utterance is not None:
            loss = loss + to_chance(self.utterance(utterances))
        return loss


def train_split(f_theta: CnnRnn, data: SegmentSet, dims: int, cfg: SplitConfig,
                device, show_progress: bool = False,
                output_adversary: float = 0.0) -> tuple[SplitNet, list[dict]]:
    """The min–max game on `data` (emotion training segments), then the server part's
    adaptation; returns the network and each epoch's figures.

    `output_adversary` > 0 (a debiased f_θ's weight, `TrainConfig.output_adversary`): the
    server part also plays, in both stages, against a gender adversary on its own output,
    as the debiased f_θ was trained, so that what the service answers stays debiased."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = SplitNet(f_theta, dims, len(data.labels), cfg.rnn_hidden).to(device)
    maps = conv_maps(net.front, data, device)
    genders = data.relabel("gender").y
    game = _Game(cfg, dims, data, device)
    answer_adversary = (OutputAdversary(len(data.labels), genders).to(device)
                        if output_adversary else None)
    trained = [net.front.project.weight, net.front.project.bias, net.log_sigma,
               *net.back.parameters()]
    opt = torch.optim.Adam(trained, lr=cfg.lr)
    back_opt = torch.optim.Adam(net.back.parameters(), lr=cfg.lr)  # the adaptation's
    history = []
    for epoch in tqdm(range(cfg.epochs + cfg.adapt_epochs), desc=f"split net k={dims}",
                      unit="epoch", disable=not show_progress):
        playing = epoch < cfg.epochs  # then the server part adapts alone
        if playing and cfg.refresh_every and epoch and epoch % cfg.refresh_every == 0:
            game.renew()
        index, _ = balanced_index(data, "emotion", gen)
        order = index[torch.randperm(len(index), generator=gen)]
        totals = {"emotion_ce": 0.0, "adversary_acc": 0.0}
        for batch in order.split(cfg.batch_size):
            m, y, g = maps[batch].to(device), data.y[batch].to(device), genders[batch].to(device)
            if playing:
                loss, logits, accuracy = _game_step(net, game, maps, m, y, g, gen)
                totals["adversary_acc"] += accuracy
            else:  # the device part is fixed: only the server part learns
                with torch.no_grad():
                    z = net.noisy(net.front.embed(m))
                logits = net.back(z)
                loss = F.cross_entropy(logits, y)
            if answer_adversary is not None:
                loss = loss + output_adversary * answer_adversary.play(logits, g)
            step = opt if playing else back_opt
            step.zero_grad()
            loss.backward()
            step.step()
            totals["emotion_ce"] += F.cross_entropy(logits.detach(), y).item()
        n = max(1, len(order.split(cfg.batch_size)))
        history.append({"epoch": epoch + 1, "stage": "game" if playing else "adapt",
                        "emotion_ce": totals["emotion_ce"] / n,
                        "adversary_acc": 100 * totals["adversary_acc"] / n if playing else None,
                        "sigma_mean": net.sigma().mean().item()})
    return net.eval(), history


def _game_step(net: SplitNet, game: _Game, maps: torch.Tensor, m: torch.Tensor,
               y: torch.Tensor, g: torch.Tensor, gen: torch.Generator):
    """One batch of the game: the adversaries catch up with the current network, then the
    network's loss (emotion, the adversaries pushed to chance, a reward for noise)."""
    cfg = game.cfg
    picked = game.utterance_sample(gen) if game.utterance is not None else None
    with torch.no_grad():
        z = net.noisy(net.front.embed(m))
        utterances = (game.utterance_embeddings(net, maps, picked)
                      if picked is not None else None)
    accuracy = game.train_adversaries(z, g, utterances, picked)
    z = net.noisy(net.front.embed(m))
    if picked is not None:
        utterances = game.utterance_embeddings(net, maps, picked)
    logits = net.back(z)
    loss = (F.cross_entropy(logits, y) + cfg.adversary_weight * game.privacy(z, utterances)
            - cfg.noise_weight * net.log_sigma.mean())
    return loss, logits, accuracy
