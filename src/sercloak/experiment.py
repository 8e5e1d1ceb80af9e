"""`sercloak experiment`: the privacy–utility grid of one method, resumable, with a report.

A method is one *design* of what the device sends (`DESIGNS`), with its
operating points (`Point`):

- ``spectrogram`` (`designs/spectrogram.py`): log-mel features protected by
  a cloak (its kind, warp, mask rule and game: `CloakConfig`,
  `CloakTrainConfig`) in two variants, without (`plain`) and with adversaries
  (`adversarial`), at suppression ratios `ratios`; or by a transform of the
  audio before features (`transform`: the anonymisation baselines `mcadams`,
  `pitch_shift`, or per-user voice normalisation `voicenorm`), alone or
  followed by a cloak trained on its features (`cloak_after`). Optionally the
  service adapts to it (`adapt_epochs`: f_θ fine-tuned on protected features
  of its own training speakers);
- ``posteriors`` (`designs/posteriors.py`): only f_θ's emotion probabilities
  of each window: the floor any design whose server outputs emotion leaks;
- ``embedding`` (`designs/split.py`): a split network whose device part sends
  a noisy k-dimensional sequence, at k in `split.dims`.

For every seed and fold: the clean baselines (f_θ, f_g) of the protocol, then
each operating point scored by

- emotion: f_θ (or its adapted copy) on protected utterances (utility), and
  its paired drop from the clean f_θ on the same utterances;
- the gender attackers that can read what is sent (`attacks/`): on
  spectrograms the `cnn`, `stats` and `dvector` families, each *ignorant*
  (fitted on clean features) and *informed* (fitted on protected features of
  its own speakers, selected on protected validation speakers), and the
  speaker EER among protected utterances; on sequences the `lr`, `gbt` (and
  `gru`) attackers, informed; the worst case over all of them
  (`gender_worst`, the privacy figure).

With `select_folds`, every setting is first scored on the validation
speakers of the primary pool (`folds.SELECTION_PART`) of those folds, each
method's operating point is chosen there (`results.choose`), and only that
point is scored on the test speakers; the attackers fitted for the choice are
the ones that then score the test speakers.

Everything made is saved where `layout.Layout` says: an interrupted run skips
what is done and a run with other settings never reuses it (the run tag
covers every setting that shapes a cloak). `results.json` keeps every method
run on the workdir under one protocol (`results.merge_results`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from .anonymise import TRANSFORMS
from .attacks.speaker_encoder import SpeakerEncoder
from .attacks.suite import AttackConfig, load_encoder
from .baselines import model_tag, reference_configs, run_baselines, with_seed
from .cloak import CloakConfig
from .cloak.training import CloakTrainConfig
from .data import Workdir
from .designs.posteriors import PosteriorRunner
from .designs.spectrogram import CloakRunner
from .designs.split import SplitConfig, SplitRunner
from .folds import DEFAULT_PROTOCOL, PROTOCOLS, SELECTION_PART
from .layout import setting_name
from .methods import Method
from .report import write_report
from .results import (
    RESULTS_FORMAT,
    choose,
    merge_results,
    summarise_clean,
    summarise_setting,
)
from .runner import FoldRunner, Models, Point, digest, unseeded
from .train import TrainConfig
from .voicenorm import SETTINGS as VOICENORM_SETTINGS

RATIOS = (0, 20, 40, 60)
TRANSFORM_NAMES = (*TRANSFORMS, "voicenorm")
VARIANTS = ("plain", "adversarial")
RUNNERS: dict[str, type[FoldRunner]] = {"spectrogram": CloakRunner,
                                        "posteriors": PosteriorRunner, "embedding": SplitRunner}
DESIGNS = tuple(RUNNERS)


@dataclass(frozen=True)
class ExperimentConfig:
    design: str = "spectrogram"  # what the device sends (DESIGNS)
    cloak: CloakConfig = CloakConfig()
    cloak_train: CloakTrainConfig = CloakTrainConfig()
    attacks: AttackConfig = AttackConfig()
    ratios: tuple[int, ...] = RATIOS
    variants: tuple[str, ...] = VARIANTS  # cloaks without and with adversaries
    transform: str | None = None  # the audio's transform before features (TRANSFORM_NAMES)
    cloak_after: bool = False  # with a transform: a cloak on its features (else none)
    adapt_epochs: int = 0  # > 0: f_θ fine-tuned this many epochs on protected features
    split: SplitConfig = SplitConfig()  # the embedding design's network and game
    select_folds: tuple[int, ...] | None = None  # choose operating points on their valid speakers
    protocol: str = DEFAULT_PROTOCOL  # which speakers train what (folds.PROTOCOLS)
    seeds: tuple[int, ...] = (0,)  # every model, cloak and attacker, once per seed

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise ValueError(f"unknown design {self.design!r} (known: {', '.join(DESIGNS)})")
        if set(self.variants) - set(VARIANTS) or not self.variants:
            raise ValueError(f"unknown variants {self.variants} (known: {', '.join(VARIANTS)})")
        if self.transform is not None and self.transform not in TRANSFORM_NAMES:
            raise ValueError(f"unknown transform {self.transform!r} "
                             f"(known: {', '.join(TRANSFORM_NAMES)})")
        if self.cloak_after and self.transform is None:
            raise ValueError("a cloak after the transform needs a transform")
        if self.design != "spectrogram" and (self.transform or self.adapt_epochs):
            raise ValueError(f"the {self.design} design takes no transform and no "
                             f"--adapt-epochs (its server part is trained on what it reads)")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r} (known: {', '.join(PROTOCOLS)})")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one: {self.seeds}")

    def to_dict(self) -> dict:
        return {"design": self.design, "cloak": self.cloak.to_dict(),
                "cloak_train": self.cloak_train.to_dict(), "attacks": self.attacks.to_dict(),
                "ratios": list(self.ratios), "variants": list(self.variants),
                "transform": self.transform, "cloak_after": self.cloak_after,
                "adapt_epochs": self.adapt_epochs, "split": self.split.to_dict(),
                "select_folds": None if self.select_folds is None else list(self.select_folds),
                "protocol": self.protocol, "seeds": list(self.seeds)}

    def points(self) -> list[Point]:
        """Every operating point of the method."""
        if self.design == "posteriors":
            return [Point("posteriors")]
        if self.design == "embedding":
            return [Point(f"embedding_k{k}", dims=k) for k in self.split.dims]
        if self.transform is not None and not self.cloak_after:
            return [Point(self.transform)]
        return [Point(setting_name(ratio, variant == "adversarial"), ratio,
                      variant == "adversarial")
                for variant in self.variants for ratio in self.ratios]

    def seeded(self, seed: int) -> ExperimentConfig:
        """The configuration of one seed: its cloaks, networks and attackers drawn from it."""
        return replace(self, cloak_train=replace(self.cloak_train, seed=seed),
                       split=replace(self.split, seed=seed),
                       attacks=replace(self.attacks, seed=seed))


def run_tag(cfg: ExperimentConfig, baseline_configs: dict[str, TrainConfig]) -> str:
    """Folder name of one configuration's runs: other settings never reuse them (the seed
    is a folder of its own inside). Neither the points run nor the attackers change it."""
    everything = {"baselines": {t: unseeded(c.to_dict())
                                for t, c in sorted(baseline_configs.items())}}
    if cfg.design == "posteriors":
        return f"posteriors-{digest(everything)}"
    if cfg.design == "embedding":
        everything["split"] = unseeded(cfg.split.to_dict())
        return f"embedding-{digest(everything)}"
    if cfg.transform is not None:
        everything["transform"] = transform_settings(cfg.transform)
        if not cfg.cloak_after:
            return f"{cfg.transform}-{digest(everything)}"
    everything.update(cloak=cfg.cloak.to_dict(), cloak_train=unseeded(cfg.cloak_train.to_dict()))
    prefix = f"{cfg.transform}-" if cfg.transform else ""
    return f"{prefix}{cfg.cloak.shape}-{digest(everything)}"


def transform_settings(name: str) -> dict:
    """What defines a transform's output, for run tags (voice normalisation's factors come
    from the data; its settings are fixed in `voicenorm`)."""
    return VOICENORM_SETTINGS if name == "voicenorm" else TRANSFORMS[name].describe()


def protected_workdir(wd: Workdir, name: str, show_progress: bool = True) -> Workdir:
    """The same utterances with features of their transformed audio (built once)."""
    if name == "voicenorm":
        return wd.voice_normalised(show_progress)
    return wd.transformed(TRANSFORMS[name], show_progress)


def method_of(cfg: ExperimentConfig, point: Point) -> Method:
    """The method `cfg` runs at `point`, as data (its name, label and spec)."""
    if cfg.design != "spectrogram":
        return Method(cfg.design)
    cloak = None
    if cfg.transform is None or cfg.cloak_after:
        c = cfg.cloak
        cloak = tuple(([c.kind] if c.kind != "noise" else []) + (["warp"] if c.warp else [])
                      + (["saliency"] if c.mask_by == "saliency" else []))
    game = None
    if cloak is not None and point.adversarial:
        game = "adversarial" if cfg.cloak_train.game == "grl" else cfg.cloak_train.game
    return Method(cfg.design, cfg.transform, cloak, game, bool(cfg.adapt_epochs))


@dataclass
class Grid:
    """One method's run: a FoldRunner per seed and fold, made when first needed and kept, so
    the attackers fitted while choosing operating points also score the test speakers."""

    wd: Workdir
    cfg: ExperimentConfig
    models: Models
    run_dir: Path
    encoder: SpeakerEncoder | None
    show_progress: bool
    protected_wd: Workdir | None = None
    runners: dict[tuple[int, int], FoldRunner] = field(default_factory=dict)

    def runner(self, seed: int, fold: int) -> FoldRunner:
        if (seed, fold) not in self.runners:
            models = Models(with_seed(self.models.configs, seed),
                            with_seed(self.models.reference, seed))
            self.runners[seed, fold] = RUNNERS[self.cfg.design](
                self.wd, fold, models, self.cfg.seeded(seed), self.run_dir, self.encoder,
                self.show_progress, self.protected_wd)
        return self.runners[seed, fold]

    def score(self, folds: list[int], points: list[Point], part: str) -> tuple[list[dict], dict]:
        """Every point on `part` of `folds` for every seed: (one entry per point, the clean
        reference), each summarised over seeds and folds."""
        seeds = self.cfg.seeds
        clean = [[None] * len(folds) for _ in seeds]
        runs = {p: [[None] * len(folds) for _ in seeds] for p in points}
        units = [(i, seed, j, fold) for i, seed in enumerate(seeds) for j, fold in enumerate(folds)]
        label = method_of(self.cfg, points[0]).name
        for i, seed, j, fold in tqdm(units, desc=f"{label} on {part}", unit="fold",
                                     disable=not self.show_progress):
            runner = self.runner(seed, fold)
            clean[i][j] = runner.clean(part)
            for point in points:
                runs[point][i][j] = runner.score(point, part)
            runner.release()
        return [self.entry(point, point_runs, clean) for point, point_runs in runs.items()], \
            summarise_clean(clean)

    def entry(self, point: Point, runs: list[list[dict]], clean: list[list[dict]]) -> dict:
        """One point's results.json entry."""
        method = method_of(self.cfg, point)
        entry = {"method": method.name, "spec": method.to_dict(),
                 "setting": point.name,
                 "suppression_ratio": point.suppression_ratio, "adversarial": point.adversarial,
                 "emotion_model": model_tag(self.models.configs["emotion"]),
                 "adapt_epochs": self.cfg.adapt_epochs,
                 "cloak_dir": self.wd.layout.relative(self.run_dir)}
        if point.dims is not None:
            entry["dims"] = point.dims
        return {**entry, **summarise_setting(runs, clean)}


def prepare_grid(wd: Workdir, baseline_configs: dict[str, TrainConfig], cfg: ExperimentConfig,
                 show_progress: bool = True, encoder: SpeakerEncoder | None = None) -> Grid:
    """The run's folder and config.json, the speaker encoder and the transformed features a
    method needs. The baselines must be trained (`run_baselines`)."""
    if encoder is None:
        encoder, attacks = load_encoder(cfg.attacks)
        cfg = replace(cfg, attacks=attacks)
    run_dir = wd.layout.cloak_run(cfg.protocol, model_tag(baseline_configs["emotion"]),
                                  run_tag(cfg, baseline_configs))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    protected_wd = protected_workdir(wd, cfg.transform, show_progress) if cfg.transform else None
    models = Models(baseline_configs, reference_configs(baseline_configs))
    return Grid(wd, cfg, models, run_dir, encoder, show_progress, protected_wd)


def run_experiment(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
                   cfg: ExperimentConfig = ExperimentConfig(),
                   show_progress: bool = True) -> dict:
    """Baselines, then the grid (or the operating points chosen on validation speakers);
    merges into the protocol's results.json, writes report.md and figures."""
    started = time.perf_counter()
    reference = reference_configs(baseline_configs)
    baseline = run_baselines(wd, folds, reference, cfg.protocol, cfg.seeds, show_progress)
    own = (baseline if reference == baseline_configs else
           run_baselines(wd, folds, baseline_configs, cfg.protocol, cfg.seeds, show_progress))
    grid = prepare_grid(wd, baseline_configs, cfg, show_progress)
    cfg = grid.cfg
    points, selection = cfg.points(), None
    if cfg.select_folds is not None:
        valid_entries, valid_clean = grid.score(list(cfg.select_folds), points, SELECTION_PART)
        chosen = {e["setting"] for e in choose(valid_entries).values()}
        points = [p for p in points if p.name in chosen]
        selection = {"clean": {**valid_clean, "valid_emotion": valid_clean["emotion"]["uar"]},
                     "entries": {e["setting"]: e for e in valid_entries}}
    entries, clean = grid.score(folds, points, "test")
    if selection is not None:
        for entry in entries:
            entry["validation"] = selection["entries"][entry["setting"]]
            entry["validation_clean"] = selection["clean"]
    tag = model_tag(baseline_configs["emotion"])
    results = {
        "format": RESULTS_FORMAT,
        "baseline": {**baseline, **clean},
        "clean_emotion": {tag: own["emotion"]},
        "cloak": entries,
        "config": {**cfg.to_dict(), "model": baseline["model"], "recipe": baseline["recipe"],
                   "emotion_model": tag, "normalise": wd.cfg.normalise, "folds": list(folds),
                   "cloak_dir": wd.layout.relative(grid.run_dir)},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    file = wd.layout.results(cfg.protocol)
    results = merge_results(json.loads(file.read_text()) if file.is_file() else None, results)
    file.write_text(json.dumps(results, indent=1))
    write_report(wd, results)
    return results
