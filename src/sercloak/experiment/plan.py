"""An experiment as units of work, each with its inputs and outputs named by the layout.

Five kinds of unit, for one seed and fold each:

- `BaselineUnit`: both clean models (f_θ, f_g) of a model family, trained and
  evaluated (`baselines.baseline_fold`);
- `PoolModelUnit`: f_θ trained on one pool alone, for a design whose attackers
  read a model's outputs when the protocol cross-fits them
  (`folds.crossfit_pools`);
- `TrainUnit`: what one group of a method's operating points needs before it
  is scored (the cloaks grown from one stage-1 cloak, a split network);
- `CleanUnit`: every attacker on clean utterances of a part (the reference
  the privacy figures are read against);
- `ScoreUnit`: one operating point on a part (the validation speakers where
  points are chosen, or the test speakers): emotion and every attacker.

A unit names the units whose outputs it reads (`needs`), is done when its
outputs exist and were made with the same settings (`done`), and writes
them atomically (`files.atomic_write`): an interrupted run, under any
executor, resumes where it stopped. Units are plain picklable records, so an
executor (`executors.py`) may run them in this process or ship them to
workers; each process builds what a unit needs (the workdir, a fold's runner
with its fitted attackers) once and keeps it for the next unit of the same
fold (`_Process`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..attacks.speaker_encoder import SpeakerEncoder
from ..attacks.suite import NEEDS_ENCODER, clean_scores_complete
from ..baselines import (
    attack_tag,
    baseline_fold,
    clean_emotion,
    is_evaluated,
    is_pool_model_trained,
    is_trained,
    model_tag,
    pool_model_file,
    train_pool_model,
    with_seed,
)
from ..data import Workdir
from ..designs.posteriors import PosteriorRunner
from ..designs.spectrogram import CloakRunner
from ..designs.split.runner import SplitRunner
from ..files import write_json
from ..folds import crossfit_pools
from ..layout import Layout, Setting
from ..points import Point, digest, made_by
from ..runner import FoldRunner, Models
from ..train import TrainConfig
from .config import DESIGNS, ExperimentConfig, protected_workdir

RUNNERS: dict[str, type[FoldRunner]] = {"spectrogram": CloakRunner,
                                        "posteriors": PosteriorRunner, "embedding": SplitRunner}
assert set(RUNNERS) == set(DESIGNS), "every design has a runner"


@dataclass(frozen=True)
class MethodRun:
    """What every unit of one method's run shares (picklable: paths and settings only)."""

    root: Path  # the workdir
    configs: dict[str, TrainConfig]  # the method's clean models (before seeding)
    reference: dict[str, TrainConfig]  # the clean service's (every drop is measured from it)
    cfg: ExperimentConfig
    run_dir: Path  # the method's folder (`layout.Layout.cloak_run`)
    show_progress: bool = False
    # the plain models a debiased f_θ fine-tunes (`ExperimentConfig.emotion_models`), or None
    start_from: dict[str, TrainConfig] | None = None

    def models(self, seed: int) -> Models:
        return Models(with_seed(self.configs, seed), with_seed(self.reference, seed))

    def start(self, seed: int) -> TrainConfig | None:
        """The seeded emotion model the method's f_θ fine-tunes, or None (trained anew)."""
        return None if self.start_from is None else with_seed(self.start_from, seed)["emotion"]

    def setting(self, seed: int, fold: int, point: Point) -> Setting:
        return Layout(self.root).setting(self.run_dir, seed, fold, point.name)

    def pools(self) -> tuple[str, ...]:
        """The pools whose one-pool f_θ the design's attackers read (cross-fitting)."""
        return RUNNERS[self.cfg.design].crossfit if crossfit_pools(self.cfg.protocol) else ()


# -- the units --------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineUnit:
    root: Path
    configs: dict[str, TrainConfig]  # one family, seeded
    protocol: str
    fold: int
    show_progress: bool = False
    start_from: dict[str, TrainConfig] | None = None  # the family it fine-tunes, seeded

    @property
    def needs(self) -> tuple[str, ...]:
        """The prepared workdir, and the units of the family it fine-tunes."""
        return () if self.start_from is None else (
            baseline_name(self.start_from, self.start_from["emotion"].seed, self.fold),)

    @property
    def name(self) -> str:
        return baseline_name(self.configs, self.configs["emotion"].seed, self.fold)

    def outputs(self) -> list[Path]:
        layout, cfg = Layout(self.root), self.configs["emotion"]
        return [*(layout.model(self.protocol, model_tag(c), c.seed, self.fold, task)
                  for task, c in self.configs.items()),
                layout.fold_eval(self.protocol, model_tag(cfg), cfg.seed, self.fold)]

    def done(self) -> bool:
        wd = _Process.workdir(self.root)
        return (all(is_trained(wd, self.fold, c, self.protocol) for c in self.configs.values())
                and is_evaluated(wd, self.fold, self.configs, self.protocol))

    def run(self) -> None:
        baseline_fold(_Process.workdir(self.root), self.fold, self.configs, self.protocol,
                      self.show_progress, self.start_from)


def baseline_name(configs: dict[str, TrainConfig], seed: int, fold: int) -> str:
    return f"baseline/{model_tag(configs['emotion'])}/seed{seed}/fold{fold}"


@dataclass(frozen=True)
class PoolModelUnit:
    root: Path
    config: TrainConfig  # the method's f_θ, seeded
    protocol: str
    fold: int
    pool: str
    show_progress: bool = False
    start_from: TrainConfig | None = None  # the f_θ whose same-pool model it fine-tunes

    @property
    def needs(self) -> tuple[str, ...]:
        return () if self.start_from is None else (
            pool_name(self.start_from, self.fold, self.pool),)

    @property
    def name(self) -> str:
        return pool_name(self.config, self.fold, self.pool)

    def outputs(self) -> list[Path]:
        return [pool_model_file(_Process.workdir(self.root), self.config, self.protocol,
                                self.fold, self.pool)]

    def done(self) -> bool:
        return is_pool_model_trained(_Process.workdir(self.root), self.fold, self.config,
                                     self.protocol, self.pool)

    def run(self) -> None:
        train_pool_model(_Process.workdir(self.root), self.fold, self.config, self.protocol,
                         self.pool, self.show_progress, self.start_from)


def train_name(seed: int, fold: int, group: str) -> str:
    return f"train/seed{seed}/fold{fold}/{group}"


def pool_name(config: TrainConfig, fold: int, pool: str) -> str:
    return f"pool/{model_tag(config)}/seed{config.seed}/fold{fold}/{pool}"


@dataclass(frozen=True)
class _MethodUnit:
    """A unit of one method's run, on one seed and fold."""

    method: MethodRun
    seed: int
    fold: int

    @property
    def needs(self) -> tuple[str, ...]:
        m = self.method
        emotion = m.models(self.seed).configs["emotion"]
        return tuple(dict.fromkeys([*(baseline_name(c, self.seed, self.fold)
                                      for c in (m.configs, m.reference)),
                                    *(pool_name(emotion, self.fold, p) for p in m.pools())]))

    def runner(self) -> FoldRunner:
        return fold_runner(self.method, self.seed, self.fold)

    def _attack_config(self) -> dict:
        return self.method.cfg.seeded(self.seed).attacks.to_dict()


@dataclass(frozen=True)
class TrainUnit(_MethodUnit):
    group: str = ""
    points: tuple[Point, ...] = ()

    @property
    def name(self) -> str:
        return train_name(self.seed, self.fold, self.group)

    def outputs(self) -> list[Path]:
        design = RUNNERS[self.method.cfg.design]
        return [f for p in self.points for f in design.trained_files(
            self.method.cfg, p, self.method.setting(self.seed, self.fold, p))]

    def done(self) -> bool:
        return all(f.is_file() for f in self.outputs())

    def run(self) -> None:
        runner = self.runner()
        runner.train(list(self.points))
        runner.release()


@dataclass(frozen=True)
class CleanUnit(_MethodUnit):
    part: str = "test"

    @property
    def name(self) -> str:
        return f"clean/{self.part}/seed{self.seed}/fold{self.fold}"

    def outputs(self) -> list[Path]:
        """The attackers' clean scores (`runner.FoldRunner.clean` writes them)."""
        m = self.method
        gender = m.models(self.seed).configs["gender"]
        return [Layout(m.root).clean_scores(
            m.cfg.protocol, attack_tag(gender), self.seed, self.fold, self.part)]

    def done(self) -> bool:
        result = made_by(self.outputs()[0], self._attack_config())
        return result is not None and clean_scores_complete(result, self.method.cfg.attacks,
                                                            self.part)

    def run(self) -> None:
        runner = self.runner()
        runner.clean(self.part)
        runner.release()

    def read(self) -> dict:
        """What `runner.FoldRunner.clean` returns, from the files alone (the driver reads
        it without loading the fold's models or the speaker encoder)."""
        m = self.method
        reference = m.models(self.seed).reference["emotion"]
        return {**json.loads(self.outputs()[0].read_text()),
                "emotion": clean_emotion(_Process.workdir(m.root), self.fold, reference,
                                         m.cfg.protocol, self.part)}


@dataclass(frozen=True)
class ScoreUnit(_MethodUnit):
    part: str = "test"
    point: Point = field(default_factory=lambda: Point(""))

    @property
    def name(self) -> str:
        return f"score/{self.part}/seed{self.seed}/fold{self.fold}/{self.point.name}"

    @property
    def needs(self) -> tuple[str, ...]:
        group = RUNNERS[self.method.cfg.design].training_group(self.method.cfg, self.point)
        trained = () if group is None else (train_name(self.seed, self.fold, group),)
        return super().needs + trained

    def outputs(self) -> list[Path]:
        setting = self.method.setting(self.seed, self.fold, self.point)
        return [setting.result(self.part, self.method.cfg.adapt_epochs)]

    def done(self) -> bool:
        return made_by(self.outputs()[0], self._attack_config()) is not None

    def run(self) -> None:
        started = time.perf_counter()
        runner = self.runner()
        result = runner.score(self.point, self.part)
        runner.release()
        write_json(self.outputs()[0], {**result, "attack_config": self._attack_config(),
                                       "unit_wall_s": round(time.perf_counter() - started, 1)},
                   indent=None)

    def read(self) -> dict:
        result = json.loads(self.outputs()[0].read_text())
        return {k: v for k, v in result.items() if k not in ("attack_config", "unit_wall_s")}


# -- plans --------------------------------------------------------------------------------


Family = dict[str, TrainConfig]  # both clean models (emotion, gender) of one family


def baseline_units(root: Path, families: list[tuple[Family, Family | None]], protocol: str,
                   seeds: tuple[int, ...], folds: list[int],
                   show_progress: bool = False) -> list[BaselineUnit]:
    """Every clean model of every family (each with the family it fine-tunes, or None),
    seed and fold."""
    unique = {digest({t: c.to_dict() for t, c in f.items()}): (f, start) for f, start in families}
    return [BaselineUnit(root, with_seed(configs, seed), protocol, fold, show_progress,
                         None if start is None else with_seed(start, seed))
            for configs, start in unique.values() for seed in seeds for fold in folds]


def method_units(method: MethodRun, points: dict[int, list[Point]], part: str) -> list:
    """A method's units on `part` of each fold (`points`: fold -> the points it scores): per
    seed and fold, the one-pool models it reads, the clean reference, the training of each
    group of points, the scoring of each point."""
    design = RUNNERS[method.cfg.design]
    units = []
    for seed in method.cfg.seeds:
        emotion, start = method.models(seed).configs["emotion"], method.start(seed)
        for fold, fold_points in points.items():
            for pool in method.pools():
                if start is not None:  # the plain one-pool f_θ the debiased one fine-tunes
                    units.append(PoolModelUnit(method.root, start, method.cfg.protocol, fold,
                                               pool, method.show_progress))
                units.append(PoolModelUnit(method.root, emotion, method.cfg.protocol, fold,
                                           pool, method.show_progress, start))
            units.append(CleanUnit(method, seed, fold, part))
            groups: dict[str, list[Point]] = {}
            for point in fold_points:
                group = design.training_group(method.cfg, point)
                if group is not None:
                    groups.setdefault(group, []).append(point)
            units += [TrainUnit(method, seed, fold, g, tuple(ps)) for g, ps in groups.items()]
            units += [ScoreUnit(method, seed, fold, part, p) for p in fold_points]
    return units


# -- what one process keeps between units ----------------------------------------------


class _Process:
    """The workdirs, speaker encoder and fold runners this process has built: a worker
    that runs several units of one fold fits the fold's clean attackers once."""

    workdirs: dict[str, Workdir] = {}
    runners: dict[tuple, FoldRunner] = {}
    encoder: SpeakerEncoder | None = None

    @classmethod
    def workdir(cls, root: Path) -> Workdir:
        key = str(root)
        if key not in cls.workdirs:
            cls.workdirs[key] = Workdir.open(root)
        return cls.workdirs[key]

    @classmethod
    def runner(cls, method: MethodRun, seed: int, fold: int) -> FoldRunner:
        cfg = method.cfg
        key = (str(method.run_dir), digest(cfg.to_dict()), seed, fold)
        if key not in cls.runners:
            wd = cls.workdir(method.root)
            encoder = None
            if set(NEEDS_ENCODER) & set(cfg.attacks.families):
                if cls.encoder is None:
                    cls.encoder = SpeakerEncoder.load()
                encoder = cls.encoder
            protected = protected_workdir(wd, cfg.transform, False) if cfg.transform else None
            cls.runners[key] = RUNNERS[cfg.design](
                wd, fold, method.models(seed), cfg.seeded(seed), method.run_dir, encoder,
                method.show_progress, protected)
        return cls.runners[key]

    @classmethod
    def forget(cls) -> None:
        cls.runners.clear()
        cls.workdirs.clear()


def fold_runner(method: MethodRun, seed: int, fold: int) -> FoldRunner:
    """The method's runner of one seed and fold in this process (made once, then kept)."""
    return _Process.runner(method, seed, fold)


def forget_runners() -> None:
    """Drop this process's runners and their fitted attackers (an experiment's end)."""
    _Process.forget()
