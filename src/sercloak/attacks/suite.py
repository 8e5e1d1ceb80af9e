"""The attacker suite of one fold: every family, ignorant and informed, and linkability.

Which speakers the attackers may use is the protocol's
(`folds.training_parts(protocol, "gender")`): under ``paper`` the adversary
pool's (trained on its training speakers, selected on its validation
speakers), under ``shared`` every non-test speaker's (selected on the
adversary pool's validation speakers). Ignorant attackers are fitted once per
fold on clean features and reused for every setting; informed ones are
fitted once per setting and kept, so the same fitted attacker scores the
validation speakers (to choose operating points) and the test speakers. No
attacker is fitted, selected or scored on speakers it was fitted on
(`base.check_disjoint`), so test speakers are never seen by either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from ..cloak import Cloak
from ..data import Workdir
from ..folds import training_parts
from ..layout import Setting
from ..train import TrainConfig
from .base import View, check_disjoint, score
from .cnn import CnnAttacker
from .dvector import VARIANTS, DvectorAttacker, dvectors
from .dvector_tuned import TunedEncoderAttacker
from .linkability import speaker_eer
from .speaker_encoder import EncoderUnavailable, SpeakerEncoder
from .stats import StatsAttacker

FAMILIES = ("cnn", "stats", "dvector", "dvector_ft")
INFORMED_ONLY = ("dvector_ft",)  # a retrained encoder has no clean-trained twin of its own
NEEDS_ENCODER = ("dvector", "dvector_ft")


@dataclass(frozen=True)
class AttackConfig:
    families: tuple[str, ...] = FAMILIES
    informed_draws: int = 2  # noise draws per training utterance (stats, dvector)
    informed_epochs: int = 4  # fine-tuning epochs of the informed cnn
    dvector_max_per_speaker: int | None = 60
    smoothing: int = 21  # frames of the moving average an attacker may apply
    tuned_max_per_speaker: int | None = 40  # dvector_ft: utterances per speaker, per draw
    tuned_epochs: int = 3  # dvector_ft: fine-tuning epochs
    test_only: tuple[str, ...] = ("dvector_ft",)  # for cost: not fitted to choose points
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown attacker families {sorted(unknown)} (known: {FAMILIES})")

    def to_dict(self) -> dict:
        return {**asdict(self), "families": list(self.families),
                "test_only": list(self.test_only)}

    def scored_families(self, part: str) -> tuple[str, ...]:
        """The families that score `part` (every family on the test speakers)."""
        return tuple(f for f in self.families if part == "test" or f not in self.test_only)


def scoring_seed(seed: int, fold: int) -> int:
    """The seed of the noise draws on scored utterances (test or validation)."""
    return 1000 + 100 * seed + fold


def load_encoder(cfg: AttackConfig) -> tuple[SpeakerEncoder | None, AttackConfig]:
    """The speaker encoder, or None and a config without the families that need it (saying
    why)."""
    if not set(NEEDS_ENCODER) & set(cfg.families):
        return None, cfg
    try:
        return SpeakerEncoder.load(), cfg
    except EncoderUnavailable as err:
        print(f"dvector attackers and speaker linkability skipped: {err}")
        return None, replace(cfg, families=tuple(f for f in cfg.families
                                                 if f not in NEEDS_ENCODER))


class FoldAttacks:
    """Every attacker of one fold and seed (`cfg.seed`), scored on any part of the fold.

    `f_g` is the fold's gender model (the ignorant `cnn`); informed network
    attackers are saved beside their setting's files (`layout.Setting`).
    """

    def __init__(self, wd: Workdir, fold: int, cfg: AttackConfig, f_g: Path, f_g_config:
                 TrainConfig, protocol: str, encoder: SpeakerEncoder | None,
                 show_progress: bool = False):
        self.wd, self.fold, self.cfg = wd, fold, cfg
        self.f_g, self.f_g_config = f_g, f_g_config
        self.parts = training_parts(protocol, "gender")
        self.encoder, self.show_progress = encoder, show_progress
        self._ignorant: dict[str, object] = {}
        self._informed: dict[tuple[str, str], object] = {}  # (setting, family) -> attacker
        self._views: dict[str, View] = {}

    def _view(self, parts) -> View:
        utts = self.wd.part(self.fold, parts)
        return View(utts, self.wd.features(utts), self.wd.cfg)

    @cached_property
    def train(self) -> View:
        return self._view(self.parts[0])

    @cached_property
    def valid(self) -> View:
        return self._view(self.parts[1])

    def scored(self, part: str) -> View:
        """Clean utterances of the scored part (test, or validation speakers)."""
        if part not in self._views:
            self._views[part] = self._view(part)
        return self._views[part]

    def release(self) -> None:
        """Forget the clean views (features in memory); fitted attackers are kept."""
        self._views.clear()
        self.__dict__.pop("train", None)
        self.__dict__.pop("valid", None)

    # -- the attackers ------------------------------------------------------------------

    def _new(self, family: str, informed: bool, setting: Setting | None = None):
        c = self.cfg
        if family == "stats":
            return StatsAttacker(smoothings=(1, c.smoothing), seed=c.seed)
        if family == "dvector":
            return DvectorAttacker(self.encoder, VARIANTS if informed else ("raw",),
                                   max_per_speaker=c.dvector_max_per_speaker,
                                   smoothing=c.smoothing, seed=c.seed)
        if family == "dvector_ft":
            return TunedEncoderAttacker(self.encoder, c.tuned_max_per_speaker, c.tuned_epochs,
                                        seed=c.seed)
        if not informed:
            return CnnAttacker(self.f_g, self.f_g_config, show_progress=self.show_progress)
        saved = self.ignorant("cnn").saved
        config = TrainConfig.from_dict({**saved["train_config"], "max_epochs": c.informed_epochs})
        return CnnAttacker(setting.informed("cnn"), config, init_state=saved["state_dict"],
                           show_progress=self.show_progress)

    def ignorant(self, family: str):
        """The family's attacker fitted on clean features (once per fold)."""
        if family not in self._ignorant:
            check_disjoint(self.train, self.valid)
            self._ignorant[family] = self._new(family, informed=False).fit(self.train, self.valid)
        return self._ignorant[family]

    def informed(self, family: str, setting: Setting, train: View, valid: View):
        """The family's attacker fitted on protected `train`, selected on protected `valid`
        (once per setting)."""
        key = (setting.name, family)
        if key not in self._informed:
            check_disjoint(train, valid)
            self._informed[key] = self._new(family, True, setting).fit(train, valid)
        return self._informed[key]

    # -- scoring ---------------------------------------------------------------------------

    def clean(self, part: str = "test") -> dict:
        """Each family on clean utterances of `part`, and the speaker EER. On clean speech
        every attacker is fitted on clean features, `dvector_ft` too: the encoder retrained
        on the per-user-normalised features a service receives, unlike the dB features it
        learned from (`clean_scores_complete` tells a file made before it joined)."""
        test, result = self.scored(part), {"attackers": {}}
        for family in self.cfg.scored_families(part):
            attacker = self.ignorant(family)
            result["attackers"][family] = {**score_unseen(attacker, test),
                                           "chosen": attacker.chosen}
        if self.encoder is not None:
            result["speaker_eer"] = self._eer(test, ("raw",))
        return result

    def protected(self, setting: Setting, part: str = "test", source: Workdir | None = None,
                  cloak: Cloak | None = None) -> dict:
        """Each family, ignorant and informed, on protected utterances of `part`: features of
        `source` (the same utterances' anonymised audio, e.g. `Workdir.transformed`; default
        the clean features), through `cloak` when given. The informed attackers are fitted on
        the same protection of their own speakers (`informed_draws` noise draws each) and
        selected on their protected validation speakers; also the speaker EER."""
        c = self.cfg
        test = _on(self.scored(part), source).through(cloak, 1,
                                                      seed=scoring_seed(c.seed, self.fold))
        result, variants = {"attackers": {}}, ["raw"]
        views: dict[str, View] = {}

        def fitted(family: str):
            if (setting.name, family) not in self._informed and not views:
                views["train"] = _on(self.train, source).through(cloak, c.informed_draws,
                                                                 seed=c.seed)
                views["valid"] = _on(self.valid, source).through(cloak, 1, seed=c.seed + 1)
            return self.informed(family, setting, views.get("train"), views.get("valid"))

        for family in self.cfg.scored_families(part):
            informed = fitted(family)
            result["attackers"][family] = {
                "informed": {**score_unseen(informed, test), "chosen": informed.chosen}}
            if family not in INFORMED_ONLY:
                ignorant = self.ignorant(family)
                result["attackers"][family]["ignorant"] = {**score_unseen(ignorant, test),
                                                           "chosen": ignorant.chosen}
            if family == "dvector":
                variants.append(informed.variant)
        if self.encoder is not None:  # d-vectors as the ignorant and the informed attacker see them
            result["speaker_eer"] = self._eer(test, tuple(dict.fromkeys(variants)))
        return result

    def _eer(self, test: View, variants: tuple[str, ...]) -> float | None:
        """The lowest EER (the better linker) over the d-vector variants given.

        None when the scored part has a single speaker (no different-speaker pairs).
        """
        speakers = [u.speaker for u in test.utterances]
        if len(set(speakers)) < 2:
            return None
        return round(min(speaker_eer(dvectors(test, self.encoder, v, self.cfg.smoothing),
                                     speakers, self.cfg.seed) for v in variants), 2)


def clean_scores_complete(result: dict, cfg: AttackConfig, part: str) -> bool:
    """Whether clean scores of `part` (`FoldAttacks.clean`) hold every family `cfg` scores
    there: a file without one is made again."""
    return set(cfg.scored_families(part)) <= set(result.get("attackers", {}))


def _on(view: View, source: Workdir | None) -> View:
    """The same utterances with the features of `source`, or the view itself."""
    return view if source is None else View(view.utterances, source.features(view.utterances),
                                            source.cfg)


def score_unseen(attacker, test: View) -> dict:
    """`base.score`, refusing an attacker fitted or selected on any of the scored speakers."""
    shared = attacker.fitted_on & test.speakers
    if shared:
        raise ValueError(f"an attacker would be scored on speakers it was fitted or selected "
                         f"on (test speakers must stay unseen): {sorted(shared)}")
    return score(attacker, test)
