"""The `embedding` design: a split emotion network whose device part sends a noisy
k-dimensional sequence, and whose server part recognises the emotion from it.

    device:  log-mel window (200, 128) -> f_θ's standardisation and convolutional
             blocks (frozen) -> per time step a projection to k dimensions, tanh
             -> + σ·ε (σ learned per dimension)      = what is sent: (steps, k)
    server:  bidirectional GRU over the steps -> mean -> two linear layers -> emotion

The front starts from f_θ's trained convolutions and stays frozen, so training
runs on their cached output maps: only the projection, the noise scales and the
server part learn. They learn in a min–max game (issue 10's `minmax`) against
adversaries that read the noisy embedding: an MLP on every time step and a
differentiable utterance-statistics adversary (mean, std, min and max of each
dimension over the window's steps). Per batch every adversary first takes
`adversary_steps` steps on the noisy embeddings, then the network takes one
step on

    CE(emotion) + adversary_weight · Σ CE(ψ(z + σ·ε), uniform) − noise_weight · mean(log σ)

(the last term rewards noise, like the cloak's L_c; the tanh keeps the
embedding's scale from outgrowing it). Afterwards the server part adapts
alone to the noisy embeddings for `adapt_epochs` (the service side of issue
10's adaptation). k is chosen on validation speakers among `dims`.

The attackers read what is sent, every window of an utterance at the 0.5 s
hop (`attacks.sequence`: `lr`, `gbt`, `gru`), fitted on the attacker pool's
embeddings (`draws` noise draws each) and selected on its validation speakers.
They read outputs for speakers the network never trained on: under
``shared``, where the network trains on every non-test speaker, they attack
its *twin*, the same network trained on the primary pool alone (on f_θ
trained on the primary pool alone), fitted on the twin's outputs for the
adversary pool's speakers and scoring the twin's outputs (cross-fitting,
`folds.crossfit_pools`; a k-dimensional embedding is the network's own
coordinates, so an attacker fitted on one network cannot read another's). The
emotion figure is the deployed network's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..attacks.base import View
from ..attacks.sequence import SEQUENCE_ATTACKERS
from ..attacks.suite import attacked, scoring_seed
from ..baselines import pool_model_file
from ..checkpoint import CHECKPOINT_FORMAT, load_checkpoint, torch_save
from ..cloak.training import to_chance
from ..data import SegmentSet, balanced_index
from ..folds import POOLS, crossfit_pools, other_pool, training_parts
from ..layout import Setting
from ..models import CnnRnn
from ..runner import FoldRunner, Point, check_unseen_by


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


class Front(nn.Module):
    """The device part: (batch, frames, mels) dB -> (batch, steps, k) clean embedding."""

    def __init__(self, f_theta: CnnRnn, dims: int):
        super().__init__()
        self.register_buffer("feat_mean", f_theta.feat_mean.clone())
        self.register_buffer("feat_std", f_theta.feat_std.clone())
        self.conv = copy.deepcopy(f_theta.conv).eval()
        for p in self.conv.parameters():
            p.requires_grad_(False)
        width = f_theta.rnn.input_size  # channels x remaining mel bins
        self.project = nn.Linear(width, dims)

    def train(self, mode: bool = True) -> Front:
        super().train(mode)
        self.conv.eval()  # f_θ's convolutions stay as trained: BatchNorm statistics included
        return self

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen convolutions' output, (batch, steps, channels x bins)."""
        x = (x - self.feat_mean) / self.feat_std
        h = self.conv(x.unsqueeze(1).contiguous(memory_format=torch.channels_last))
        b, c, t, f = h.shape
        return h.permute(0, 2, 1, 3).reshape(b, t, c * f)

    def embed(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.project(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.maps(x))


class Back(nn.Module):
    """The server part: (batch, steps, k) -> (batch, n_classes) logits."""

    def __init__(self, dims: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.rnn = nn.GRU(dims, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden,
                                                                                    n_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(z)
        return self.head(h.mean(dim=1))


class SplitNet(nn.Module):
    """Front, noise and back together: `forward` is the whole service on dB windows, with a
    fresh noise draw (from torch's global generator) every call."""

    def __init__(self, f_theta: CnnRnn, dims: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.front = Front(f_theta, dims)
        self.log_sigma = nn.Parameter(torch.full((dims,), np.log(0.1), dtype=torch.float32))
        self.back = Back(dims, n_classes, hidden)

    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def noisy(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.sigma() * torch.randn_like(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.noisy(self.front(x)))


class StepAdversary(nn.Module):
    """ψ reading every time step: an MLP per step, its logits averaged over the steps."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).mean(dim=1)


class StatsAdversary(nn.Module):
    """ψ reading the window's statistics: mean, std, min and max of every dimension."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(4 * dims), nn.Linear(4 * dims, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([z.mean(1), z.std(1), z.amin(1), z.amax(1)], dim=1)
        return self.net(stats)


@torch.no_grad()
def conv_maps(front: Front, data: SegmentSet, device, batch_size: int = 256) -> torch.Tensor:
    """The frozen convolutions' output for every segment (cached for training)."""
    return torch.cat([front.maps(data.x[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(data), batch_size)])


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


def save_split(path, net: SplitNet, dims: int, cfg: SplitConfig, history: list[dict],
               speakers: list[str]) -> None:
    torch_save({"format": CHECKPOINT_FORMAT, "kind": "split", "dims": dims,
                "config": cfg.to_dict(), "history": history, "speakers": speakers,
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)


def load_split(path, f_theta: CnnRnn, cfg: SplitConfig | None = None,
               speakers: list[str] | None = None) -> SplitNet | None:
    """The split network saved at `path` (built around f_θ's architecture), or None when
    it is missing or was made with other settings (`cfg`) or speakers."""
    if not path.is_file():
        return None
    saved = torch.load(path, weights_only=True)
    if saved.get("kind") != "split":
        raise ValueError(f"{path}: not a split network")
    if (cfg is not None and saved["config"] != cfg.to_dict()) or \
            (speakers is not None and saved["speakers"] != speakers):
        return None
    n_classes = f_theta.head[-1].out_features
    net = SplitNet(f_theta, saved["dims"], n_classes, saved["config"]["rnn_hidden"])
    net.load_state_dict(saved["state_dict"])
    return net.eval()


class SplitRunner(FoldRunner):
    """The split network of one seed and fold at every k (and its twin, when cross-fitted),
    and the attackers on what it sends."""

    crossfit = ("primary",)  # the twin's f_θ

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._nets: dict[tuple[int, bool], SplitNet] = {}
        self._fitted: dict[int, tuple[dict, View]] = {}

    @staticmethod
    def training_group(cfg, point: Point) -> str | None:
        # cross-fitted: every k and its twin in one unit, after the one-pool f_θ
        return "networks" if crossfit_pools(cfg.protocol) else point.name

    @staticmethod
    def trained_files(cfg, point: Point, setting: Setting) -> list[Path]:
        return [setting.network] + ([setting.twin_network] if crossfit_pools(cfg.protocol)
                                    else [])

    def train(self, points: list[Point]) -> None:
        for point in points:
            self.net(point)
            self.attacked_net(point)

    def net(self, point: Point, twin: bool = False) -> SplitNet:
        """The trained network of `point` (trained once, saved beside its scores), or its
        twin: the same trained on the primary pool alone, on f_θ of that pool."""
        key = (point.dims, twin)
        if key not in self._nets:
            files = self.setting(point.name)
            file, parts, f_theta = files.network, self.parts[0], self.f_theta
            if twin:
                file, parts = files.twin_network, POOLS["primary"]
                f_theta = load_checkpoint(self._twin_f_theta_file(), self.wd.cfg,
                                          self.device)[0]
            net = load_split(file, f_theta, self.cfg.split, self.wd.speakers(self.fold, parts))
            if net is None:
                data = self.segments(parts, "emotion", True)
                net, history = train_split(f_theta, data, point.dims, self.cfg.split,
                                           self.device, self.show_progress)
                file.parent.mkdir(parents=True, exist_ok=True)
                save_split(file, net, point.dims, self.cfg.split, history, data.speakers)
            self._nets[key] = net.to(self.device).eval()
        return self._nets[key]

    def _twin_f_theta_file(self) -> Path:
        return pool_model_file(self.wd, self.emotion_config, self.cfg.protocol, self.fold,
                               "primary")

    def attacked_net(self, point: Point) -> SplitNet:
        """The network whose outputs the attackers read: the twin when cross-fitted."""
        return self.net(point, twin=bool(crossfit_pools(self.cfg.protocol)))

    @torch.no_grad()
    def sent(self, net: SplitNet, parts, draws: int, seed: int) -> View:
        """What the device sends for every utterance of `parts`: each window's noisy
        embedding, `draws` noise draws per utterance (as separate observations)."""
        data = self.segments(parts, "emotion", False)
        maps = conv_maps(net.front, data, self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sent = [net.noisy(net.front.embed(maps.to(self.device))).cpu().numpy()
                    for _ in range(draws)]
        utt = data.utt.numpy()
        observed = [s[utt == i] for i in range(len(data.utterances)) for s in sent]
        utterances = [u for u in data.utterances for _ in range(draws)]
        return View(utterances, observed, self.wd.cfg)

    def attacker_parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(training, validation) parts of the attackers: the protocol's, or when
        cross-fitted the other pool's training speakers."""
        train_parts, valid_parts = training_parts(self.cfg.protocol, "gender")
        pools = crossfit_pools(self.cfg.protocol)
        return (pools[other_pool("primary")] if pools else train_parts), valid_parts

    def _attackers(self, point: Point) -> tuple[dict, View]:
        if point.dims not in self._fitted:
            net, (train_parts, valid_parts) = self.attacked_net(point), self.attacker_parts()
            seed = self.cfg.attacks.seed
            train = self.sent(net, train_parts, self.cfg.split.draws, seed)
            valid = self.sent(net, valid_parts, 1, seed + 1)
            files = self.setting(point.name)
            made_by = ([files.twin_network, self._twin_f_theta_file()]
                       if crossfit_pools(self.cfg.protocol) else [files.network, self.f_theta_file])
            for file in made_by:
                for view in (train, valid):
                    check_unseen_by(file, view)
            self._fitted[point.dims] = ({name: attacker(seed=seed).fit(train, valid)
                                         for name, attacker in SEQUENCE_ATTACKERS.items()},
                                        valid)
        return self._fitted[point.dims]

    def score(self, point: Point, part: str = "test") -> dict:
        def compute() -> dict:
            net, attacked_net = self.net(point), self.attacked_net(point)
            test = self.sent(attacked_net, part, 1, seed=scoring_seed(self.seed, self.fold))
            fitted, valid = self._attackers(point)
            attackers = {name: {"informed": attacked(a, test, valid)}
                         for name, a in fitted.items()}
            return {"emotion": self._emotion(net, None, part, protected=False),
                    "attackers": attackers, "sigma_mean": net.sigma().mean().item()}

        return self._cached(self.setting(point.name).scores(part), compute)
