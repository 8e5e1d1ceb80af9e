"""`cnn`: the paper's CNN+RNN gender network f_g, as an attacker.

Ignorant: f_g trained from scratch on clean features of its pool (for the
adversary pool this is the baseline of Table 2). Informed: that f_g
fine-tuned on cloaked features of the same pool, a fresh noise draw every
batch, selected on cloaked validation speakers, exactly as the paper's
protocol extended by `sercloak experiment` has always done. Both score an
utterance by averaging the softmax of its 2 s windows. The trained network
is a checkpoint file, so a finished attacker is loaded instead of retrained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..device import pick_device
from ..evaluate import predict
from ..train import TrainConfig, train
from .base import View


class CnnAttacker:
    name = "cnn"

    def __init__(self, checkpoint: Path, config: TrainConfig, init_state: dict | None = None,
                 show_progress: bool = False):
        self.checkpoint, self.config, self.init_state = Path(checkpoint), config, init_state
        self.show_progress = show_progress
        self.device = pick_device()

    def fit(self, train_view: View, valid: View) -> CnnAttacker:
        if not self._finished(train_view, valid):
            cfg = train_view.cfg
            train(train_view.segments(cfg.train_hop_frames), valid.segments(cfg.test_hop_frames),
                  self.config, cfg, self.checkpoint, self.show_progress,
                  transform=train_view.cloak, init_state=self.init_state, curve=False)
        self.model, ckpt = load_checkpoint(self.checkpoint, train_view.cfg, self.device)
        self.saved = ckpt  # its settings and weights: an informed attacker starts from them
        self.chosen = {"best_epoch": ckpt["metrics"]["best_epoch"],
                       "valid_uar": round(ckpt["metrics"]["valid_uar"], 2)}
        self.fitted_on = train_view.speakers | valid.speakers
        return self

    def _finished(self, train_view: View, valid: View) -> bool:
        """A checkpoint made with this attacker's settings on these speakers exists."""
        if not self.checkpoint.is_file():
            return False
        _, ckpt = load_checkpoint(self.checkpoint)
        speakers = {"train": sorted(train_view.speakers), "valid": sorted(valid.speakers)}
        return (ckpt["train_config"] == self.config.to_dict()
                and ckpt["metrics"].get("speakers") == speakers)

    def predict_proba(self, test: View) -> np.ndarray:
        segments = test.segments(test.cfg.test_hop_frames)
        with torch.random.fork_rng(devices=[]):  # the cloak's noise draws, reproducible
            torch.manual_seed(test.seed)
            return predict(self.model, segments, test.cloak, device=self.device)
