"""The split network: the device part (`Front`: f_θ's frozen convolutions, a projection to
k dimensions, tanh), the noise, the server part (`Back`), the adversaries of its game, and
its file."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...checkpoint import CHECKPOINT_FORMAT, torch_save
from ...data import SegmentSet
from ...models import CnnRnn, conv_steps


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
        """The frozen convolutions' output, (batch, steps, channels x bins): f_θ's own
        (`models.conv_steps`)."""
        return conv_steps(self.conv, self.feat_mean, self.feat_std, x)

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


class GruAdversary(nn.Module):
    """ψ reading a window's steps in order: a bidirectional GRU, averaged over the steps
    (what the `gru` attacker reads)."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.rnn = nn.GRU(dims, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(z)[0].mean(dim=1))


class UtteranceAdversary(nn.Module):
    """ψ reading a whole utterance: mean, std, min and max of every dimension over all steps
    of all its windows, and the log number of steps (the `lr` and `gbt` attackers' view).
    `forward` takes the utterances' embeddings as one (steps, k) tensor each."""

    def __init__(self, dims: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(4 * dims + 1), nn.Linear(4 * dims + 1, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, utterances: list[torch.Tensor]) -> torch.Tensor:
        stats = torch.stack([torch.cat([u.mean(0), u.std(0), u.amin(0), u.amax(0),
                                        torch.log(torch.tensor([float(len(u))], device=u.device))])
                             for u in utterances])
        return self.net(stats)


WINDOW_ADVERSARIES = {"step": StepAdversary, "stats": StatsAdversary, "gru": GruAdversary}
ADVERSARIES = (*WINDOW_ADVERSARIES, "utterance")


@torch.no_grad()
def conv_maps(front: Front, data: SegmentSet, device, batch_size: int = 256) -> torch.Tensor:
    """The frozen convolutions' output for every segment (cached for training)."""
    return torch.cat([front.maps(data.x[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(data), batch_size)])


def save_split(path, net: SplitNet, dims: int, cfg, history: list[dict],
               speakers: list[str]) -> None:
    torch_save({"format": CHECKPOINT_FORMAT, "kind": "split", "dims": dims,
                "config": cfg.to_dict(), "history": history, "speakers": speakers,
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)


def load_split(path, f_theta: CnnRnn, cfg=None,
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


