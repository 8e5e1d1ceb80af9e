"""The paper's CNN+RNN classifier: emotion model f_θ and gender attacker f_g alike.

log-mel (batch, frames, mels)
  -> per-mel-bin standardisation (statistics of the training speakers, kept
     in the model so a checkpoint carries them)
  -> [optional average pooling of the input]
  -> conv blocks: Conv2d -> BatchNorm -> ReLU -> MaxPool 2x2 -> Dropout,
     the last block giving a 128-channel map
  -> bidirectional GRU over time on (channels x remaining mel bins)
  -> mean over time -> Linear -> ReLU -> Dropout -> Linear (n classes)

Two configurations:
- ``reference``: the published one (channels 32/64/128, 5x5 kernels, no input
  pooling, 2-layer GRU of 64): about 40 ms per training segment on 2 CPU cores.
- ``light`` (default): the same family made cheap on a CPU by pooling early
  (2x2 average pooling of the input: 20 ms hop, 64 bands) and with thinner
  early convolutions (16/32/128, 5x5 then 3x3): about 15x faster to train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .settings import from_fields


@dataclass(frozen=True)
class ModelConfig:
    channels: tuple[int, ...] = (16, 32, 128)
    kernels: tuple[int, ...] = (5, 3, 3)
    input_pool: tuple[int, int] = (2, 2)  # average-pool the input by (time, frequency)
    rnn_hidden: int = 64
    rnn_layers: int = 2
    fc_hidden: int = 128
    dropout: float = 0.2

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return from_fields(cls, {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in d.items()}, "model")


PRESETS = {
    "light": ModelConfig(input_pool=(4, 2)),
    "reference": ModelConfig(channels=(32, 64, 128), kernels=(5, 5, 5), input_pool=(1, 1)),
}


def conv_block(c_in: int, c_out: int, kernel: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


class CnnRnn(nn.Module):
    def __init__(self, n_classes: int, cfg: ModelConfig = ModelConfig(),
                 n_mels: int = 128, n_frames: int = 200):
        super().__init__()
        if len(cfg.channels) != len(cfg.kernels):
            raise ValueError("channels and kernels must have the same length")
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(n_mels))
        self.register_buffer("feat_std", torch.ones(n_mels))
        blocks: list[nn.Module] = []
        if max(cfg.input_pool) > 1:
            blocks.append(nn.AvgPool2d(cfg.input_pool))
        c_in = 1
        for c_out, k in zip(cfg.channels, cfg.kernels, strict=True):
            blocks.append(conv_block(c_in, c_out, k, cfg.dropout))
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        with torch.no_grad():
            _, c, _, f = self.conv(torch.zeros(1, 1, n_frames, n_mels)).shape
        self.rnn = nn.GRU(c * f, cfg.rnn_hidden, cfg.rnn_layers, batch_first=True,
                          bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0)
        self.head = nn.Sequential(
            nn.Linear(2 * cfg.rnn_hidden, cfg.fc_hidden), nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout), nn.Linear(cfg.fc_hidden, n_classes),
        )
        # channels-last suits CPU convolutions (oneDNN) and GPU tensor cores alike
        self.conv.to(memory_format=torch.channels_last)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mels) log-mel in dB -> (batch, steps, channels x bins): what the
        recurrent part reads (and a split network's device part starts from)."""
        return conv_steps(self.conv, self.feat_mean, self.feat_std, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mels) log-mel in dB -> (batch, n_classes) logits."""
        h, _ = self.rnn(self.maps(x))
        return self.head(h.mean(dim=1))


def conv_steps(conv: nn.Module, mean: torch.Tensor, std: torch.Tensor,
               x: torch.Tensor) -> torch.Tensor:
    """Standardise, run the convolutional blocks, and read their output as a sequence of
    time steps: (batch, frames, mels) -> (batch, steps, channels x bins)."""
    x = (x - mean) / std
    h = conv(x.unsqueeze(1).contiguous(memory_format=torch.channels_last))
    b, c, t, f = h.shape
    return h.permute(0, 2, 1, 3).reshape(b, t, c * f)


def to_chance(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a gender adversary's output against the uniform distribution: least
    at chance (what every privacy game here pushes its adversaries' outputs to)."""
    return -torch.log_softmax(logits, dim=-1).mean()
