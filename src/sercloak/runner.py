"""One seed and fold of a method's run: the models it needs, the attackers it fits, and
its scores, cached where `layout.Layout` says.

A `FoldRunner` scores a method's operating points (`Point`) on a part of the
fold: the test speakers, or the validation speakers where operating points are
chosen. The base class holds what every design shares: the protocol's models
(this run's f_θ and the clean service's, `Models`), the attacker suite of the
fold, the clean reference scores, and a JSON cache that is reused only when
the same attackers made it. Each design (`designs/`) says what it sends and
how it is scored (`score`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .attacks.speaker_encoder import SpeakerEncoder
from .attacks.suite import FoldAttacks, clean_scores_complete, scoring_seed
from .baselines import attack_tag, clean_emotion, model_file
from .checkpoint import load_checkpoint
from .data import Workdir
from .device import pick_device
from .evaluate import evaluate
from .files import write_json
from .folds import training_parts
from .layout import Setting
from .models import CnnRnn
from .points import Point, made_by
from .train import TrainConfig

if TYPE_CHECKING:
    from .experiment.config import ExperimentConfig


@dataclass
class Models:
    """The models one seed's runs need: this run's (e.g. a VTLP-trained f_θ) and the clean
    service's (`reference`), whose emotion UAR every drop is measured from."""

    configs: dict[str, TrainConfig]
    reference: dict[str, TrainConfig]


class FoldRunner:
    """What every design's run of one seed and fold shares."""

    # the pools whose one-pool f_θ (`baselines.train_pool_model`) the design's attackers
    # read, when the protocol cross-fits (`folds.crossfit_pools`): none for spectrograms
    crossfit: tuple[str, ...] = ()

    def __init__(self, wd: Workdir, fold: int, models: Models, cfg: ExperimentConfig,
                 run_dir: Path, encoder: SpeakerEncoder | None, show_progress: bool,
                 protected_wd: Workdir | None = None):
        self.wd, self.fold, self.cfg = wd, fold, cfg
        self.seed = cfg.cloak_train.seed
        self.emotion_config = models.configs["emotion"]
        self.show_progress = show_progress
        self.run_dir = run_dir
        self.parts = training_parts(cfg.protocol, "emotion")
        self.device = pick_device()
        self.f_theta_file = model_file(wd, models.configs["emotion"], cfg.protocol, fold)
        self.f_theta = self._load(models.configs["emotion"])
        self.reference_config = models.reference["emotion"]
        gender = models.configs["gender"]
        self.attacks = FoldAttacks(wd, fold, cfg.attacks,
                                   model_file(wd, gender, cfg.protocol, fold), gender,
                                   cfg.protocol, encoder, show_progress)
        self.attack_tag = attack_tag(gender)
        self.protected_wd = protected_wd  # the transformed audio's features, if any
        self.base_wd = protected_wd or wd  # what the design reads
        self._sets: dict[tuple, object] = {}

    def _load(self, config: TrainConfig) -> CnnRnn:
        path = model_file(self.wd, config, self.cfg.protocol, self.fold)
        return load_checkpoint(path, self.wd.cfg, self.device)[0]

    def setting(self, name: str) -> Setting:
        return self.wd.layout.setting(self.run_dir, self.seed, self.fold, name)

    def segments(self, parts, task: str, train_hop: bool, wd: Workdir | None = None):
        wd = wd or self.wd
        key = (id(wd), parts, task, train_hop)
        if key not in self._sets:
            self._sets[key] = wd.segments(self.fold, parts, task, train=train_hop)
        return self._sets[key]

    def release(self) -> None:
        """Forget the segments and views held in memory; fitted attackers are kept."""
        self._sets.clear()
        self.attacks.release()

    def _cached(self, out: Path, compute, complete=lambda result: True) -> dict:
        """A JSON result, reused only if made by the same attackers (and `complete`)."""
        attack_config = self.cfg.attacks.to_dict()
        result = made_by(out, attack_config)
        if result is not None and complete(result):
            return result
        result = {**compute(), "attack_config": attack_config}
        write_json(out, result, indent=None)
        return result

    def _emotion(self, model: torch.nn.Module, transform, part: str, protected: bool) -> dict:
        """`model` on utterances of `part` (the design's features when `protected`), through
        `transform` (e.g. a cloak, its noise drawn from the scoring seed)."""
        wd = self.base_wd if protected else self.wd
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(scoring_seed(self.seed, self.fold))
            return evaluate(model, self.segments(part, "emotion", False, wd), transform,
                            self.device)

    def clean(self, part: str = "test") -> dict:
        """The clean service's f_θ (its evaluation by `baselines`) and every attacker on
        clean utterances of `part`."""
        out = self.wd.layout.clean_scores(self.cfg.protocol, self.attack_tag, self.seed,
                                          self.fold, part)
        return {**self._cached(out, lambda: self.attacks.clean(part),
                               lambda r: clean_scores_complete(r, self.cfg.attacks, part)),
                "emotion": clean_emotion(self.wd, self.fold, self.reference_config,
                                         self.cfg.protocol, part)}

    # -- what a design trains before it is scored (one unit of work per group) ----------

    @staticmethod
    def training_group(cfg: ExperimentConfig, point: Point) -> str | None:
        """The group of trained things `point` needs, trained together by `train` (e.g. a
        cloak's ratios, all grown from one stage-1 cloak); None when it needs none."""
        return None

    @staticmethod
    def trained_files(cfg: ExperimentConfig, point: Point, setting: Setting) -> list[Path]:
        """The files `train` makes for `point` (`setting`: its files)."""
        return []

    def train(self, points: list[Point]) -> None:
        """Make what `points` (one group) need before they are scored."""

    def score(self, point: Point, part: str = "test") -> dict:
        """The design at `point` on utterances of `part`: `emotion` (what the service
        recognises) and `attackers` (every attacker that can read what it sends)."""
        raise NotImplementedError


def trained_speakers(file: Path) -> set[str]:
    """The speakers a saved model (a checkpoint or a split network) was trained on."""
    saved = torch.load(file, map_location="cpu", weights_only=True)
    return set(saved["speakers"] if saved.get("kind") == "split"
               else saved["metrics"]["speakers"]["train"])


def check_unseen_by(file: Path, view) -> None:
    """Refuse a model's outputs for speakers it trained on (`view`: what an attacker of a
    model-output design is fitted or selected on): outputs the model has fitted would
    teach the attacker less than a real one learns from its own speakers."""
    shared = trained_speakers(file) & view.speakers
    if shared:
        raise ValueError(f"an attacker would read {file.name}'s outputs for speakers it was "
                         f"trained on: {sorted(shared)}")
