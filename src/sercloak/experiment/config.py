"""One method's configuration: what the device sends (its design), the operating points
it is run at, the folder its runs are kept in (`run_tag`), and the method record each
point is reported as (`method_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..anonymise import TRANSFORMS
from ..attacks.suite import AttackConfig
from ..cloak import CloakConfig
from ..cloak.training import CloakTrainConfig
from ..data import Workdir
from ..designs.split.training import DIMS, SplitConfig
from ..folds import DEFAULT_PROTOCOL, PROTOCOLS
from ..layout import setting_name, split_setting_name
from ..methods import Method
from ..points import Point, digest, unseeded
from ..train import TrainConfig
from ..voicenorm import SETTINGS as VOICENORM_SETTINGS

RATIOS = (0, 20, 40, 60)
TRANSFORM_NAMES = (*TRANSFORMS, "voicenorm")
VARIANTS = ("plain", "adversarial")
DESIGNS = ("spectrogram", "posteriors", "embedding")  # each a runner (`plan.RUNNERS`)
# what the posteriors service answers: its window probabilities, those calibrated per user
# (each user's running mean removed), or the utterance's label alone
OUTPUTS = ("probabilities", "calibrated", "label")


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
    select: bool = False  # choose each fold's operating point on its validation speakers
    protocol: str = DEFAULT_PROTOCOL  # which speakers train what (folds.PROTOCOLS)
    seeds: tuple[int, ...] = (0,)  # every model, cloak and attacker, once per seed
    output: str = "probabilities"  # the posteriors design's answer (OUTPUTS)
    # > 0: the method's emotion model is debiased: trained against a gender adversary on its
    # outputs with this weight (`train.OutputAdversary`); drops stay measured from the plain
    debias: float = 0.0

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
        if self.design != "spectrogram" and self.adapt_epochs:
            raise ValueError(f"the {self.design} design takes no --adapt-epochs (its server "
                             f"part is trained on what it reads)")
        if self.design == "posteriors" and self.transform:
            raise ValueError("the posteriors design takes no transform")
        if self.design == "embedding" and self.transform not in (None, "voicenorm"):
            raise ValueError("the embedding design takes voice normalisation alone as a "
                             "transform")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r} (known: {', '.join(PROTOCOLS)})")
        if self.output not in OUTPUTS:
            raise ValueError(f"unknown output {self.output!r} (known: {', '.join(OUTPUTS)})")
        if self.output != "probabilities" and self.design != "posteriors":
            raise ValueError("--output is what the posteriors design answers")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one: {self.seeds}")

    def to_dict(self) -> dict:
        return {"design": self.design, "cloak": self.cloak.to_dict(),
                "cloak_train": self.cloak_train.to_dict(), "attacks": self.attacks.to_dict(),
                "ratios": list(self.ratios), "variants": list(self.variants),
                "transform": self.transform, "cloak_after": self.cloak_after,
                "adapt_epochs": self.adapt_epochs, "split": self.split.to_dict(),
                "select": self.select,
                "protocol": self.protocol, "seeds": list(self.seeds), "output": self.output,
                "debias": self.debias}

    def points(self) -> list[Point]:
        """Every operating point of the method."""
        if self.design == "posteriors":
            return [Point(method_of(self, Point("")).name)]
        if self.design == "embedding":
            return [Point(split_setting_name(k), dims=k) for k in self.split.dims]
        if self.transform is not None and not self.cloak_after:
            return [Point(self.transform)]
        return [Point(setting_name(ratio, variant == "adversarial"), ratio,
                      variant == "adversarial")
                for variant in self.variants for ratio in self.ratios]

    def emotion_models(self, configs: dict[str, TrainConfig]) -> dict[str, TrainConfig]:
        """The method's clean models: `configs`, or with its emotion model debiased: the
        plain f_θ fine-tuned against a gender adversary on its outputs for a third of its
        epochs (`plan.BaselineUnit.start_from`), which costs a third of training anew."""
        if not self.debias:
            return configs
        emotion = configs["emotion"]
        return {**configs, "emotion": replace(emotion, output_adversary=self.debias,
                                              max_epochs=max(1, emotion.max_epochs // 3))}

    def fine_tunes(self, configs: dict[str, TrainConfig]) -> dict[str, TrainConfig] | None:
        """The plain models the method's own (`emotion_models`) fine-tune, or None."""
        return configs if self.emotion_models(configs) != configs else None

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
        if cfg.transform is not None:
            everything["transform"] = transform_settings(cfg.transform)
        prefix = f"{cfg.transform}-" if cfg.transform else ""
        return f"{prefix}embedding-{digest(everything)}"
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
    debiased = bool(cfg.debias)
    if cfg.design == "posteriors":
        return Method(cfg.design, output=None if cfg.output == "probabilities" else cfg.output,
                      debiased=debiased)
    if cfg.design == "embedding":
        return Method(cfg.design, cfg.transform, debiased=debiased,
                      game=None if cfg.split.game == "window" else cfg.split.game,
                      dims=None if cfg.split.dims == DIMS else cfg.split.dims)
    cloak = None
    if cfg.transform is None or cfg.cloak_after:
        c = cfg.cloak
        cloak = tuple(([c.kind] if c.kind != "noise" else []) + (["warp"] if c.warp else [])
                      + (["saliency"] if c.mask_by == "saliency" else []))
    game = None
    if cloak is not None and point.adversarial:
        game = "adversarial" if cfg.cloak_train.game == "grl" else cfg.cloak_train.game
    return Method(cfg.design, cfg.transform, cloak, game, bool(cfg.adapt_epochs),
                  debiased=debiased)
