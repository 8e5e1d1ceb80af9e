"""The embedding design's runs: the split network of one seed and fold at every k (and its
twin, when cross-fitted), and the attackers on what it sends."""

from __future__ import annotations

from pathlib import Path

import torch

from ...attacks.base import View
from ...attacks.sequence import SEQUENCE_ATTACKERS
from ...attacks.suite import attacked, scoring_seed
from ...baselines import pool_model_file
from ...checkpoint import load_checkpoint
from ...folds import POOLS, crossfit_pools, other_pool, training_parts
from ...layout import Setting
from ...points import Point
from ...runner import FoldRunner, check_unseen_by
from .network import SplitNet, conv_maps, load_split, save_split
from .training import train_split


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
                data = self.segments(parts, "emotion", True, self.base_wd)
                # a debiased f_θ's server part stays debiased (issue 30)
                net, history = train_split(f_theta, data, point.dims, self.cfg.split,
                                           self.device, self.show_progress,
                                           output_adversary=self.emotion_config.output_adversary)
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
        data = self.segments(parts, "emotion", False, self.base_wd)
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
            # on the device's features: voice-normalised ones, with that transform
            return {"emotion": self._emotion(net, None, part, protected=True),
                    "attackers": attackers, "sigma_mean": net.sigma().mean().item()}

        return self._cached(self.setting(point.name).scores(part), compute)
