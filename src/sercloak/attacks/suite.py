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

FAMILIES = ("cnn", "cnn_scratch", "stats", "dvector", "dvector_ft")
# trained on protected speech only: no clean-trained twin of their own
INFORMED_ONLY = ("cnn_scratch", "dvector_ft")
SAME_ON_CLEAN = ("cnn_scratch",)  # on clean speech it would be f_g (the ignorant cnn) again
NEEDS_ENCODER = ("dvector", "dvector_ft")


@dataclass(frozen=True)
class AttackConfig:
    families: tuple[str, ...] = FAMILIES
    informed_draws: int = 2  # noise draws per training utterance (stats, dvector)
    informed_epochs: int = 4  # fine-tuning epochs of the informed cnn
    scratch_patience: int = 2  # cnn_scratch: epochs without a better validation UAR
    dvector_max_per_speaker: int | None = 60
    smoothing: int = 21  # frames of the moving average an attacker may apply
    tuned_max_per_speaker: int | None = 40  # dvector_ft: utterances per speaker, per draw
    tuned_epochs: int = 12  # dvector_ft: at most, with early stopping
    tuned_patience: int = 2
    # for cost: not fitted to choose operating points (they score every test part)
    test_only: tuple[str, ...] = ("cnn_scratch", "dvector_ft")
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

    def clean_families(self, part: str) -> tuple[str, ...]:
        """The families that score clean utterances of `part`."""
        return tuple(f for f in self.scored_families(part) if f not in SAME_ON_CLEAN)


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
        self._selection: dict[tuple[str, str, str], dict] = {}  # (setting, family, version)
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
                                        patience=c.tuned_patience, seed=c.seed)
        if not informed:
            return CnnAttacker(self.f_g, self.f_g_config, show_progress=self.show_progress)
        if family == "cnn_scratch":  # f_g's recipe from scratch, stopped on validation
            config = replace(self.f_g_config, select="best", patience=c.scratch_patience)
            return CnnAttacker(setting.informed(family), config,
                               show_progress=self.show_progress)
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
        for family in self.cfg.clean_families(part):
            result["attackers"][family] = attacked(self.ignorant(family), test, self.valid)
        self._linkability(result, test, ("raw",), self._ignorant.get("dvector_ft"))
        return result

    def protected(self, setting: Setting, part: str = "test", source: Workdir | None = None,
                  cloak: Cloak | None = None) -> dict:
        """Each family, ignorant and informed, on protected utterances of `part`: features of
        `source` (the same utterances' anonymised audio, e.g. `Workdir.transformed`; default
        the clean features), through `cloak` when given. The informed attackers are fitted on
        the same protection of their own speakers (`informed_draws` noise draws each) and
        selected on their protected validation speakers, where every attacker is also
        scored (`valid`, once per setting); also the speaker EER."""
        c = self.cfg
        test = _on(self.scored(part), source).through(cloak, 1,
                                                      seed=scoring_seed(c.seed, self.fold))
        families = self.cfg.scored_families(part)
        versions = [(f, v) for f in families for v in ("informed", "ignorant")
                    if v == "informed" or f not in INFORMED_ONLY]
        views: dict[str, View] = {}
        if any((setting.name, f, v) not in self._selection for f, v in versions):
            views["train"] = _on(self.train, source).through(cloak, c.informed_draws, seed=c.seed)
            views["valid"] = _on(self.valid, source).through(cloak, 1, seed=c.seed + 1)
        result, variants = {"attackers": {}}, ["raw"]
        for family, version in versions:
            attacker = (self.informed(family, setting, views.get("train"), views.get("valid"))
                        if version == "informed" else self.ignorant(family))
            key = (setting.name, family, version)
            if key not in self._selection:
                self._selection[key] = validation_score(attacker, views["valid"])
            result["attackers"].setdefault(family, {})[version] = {
                **score_unseen(attacker, test), "chosen": attacker.chosen,
                "valid": self._selection[key]}
            if family == "dvector" and version == "informed":
                variants.append(attacker.variant)
        # d-vectors as the ignorant and the informed attacker see them, and the retrained one
        self._linkability(result, test, tuple(dict.fromkeys(variants)),
                          self._informed.get((setting.name, "dvector_ft")))
        return result

    def _linkability(self, result: dict, test: View, variants: tuple[str, ...],
                     retrained: TunedEncoderAttacker | None) -> None:
        """The speaker EER among `test` utterances (the lowest over the frozen encoder's
        d-vector `variants`) and, when the encoder was retrained on what is sent, with its
        embeddings (`speaker_eer_retrained`: semi-informed linkability). Nothing when the
        part has a single speaker (no different-speaker pairs)."""
        speakers = [u.speaker for u in test.utterances]
        if self.encoder is None or len(set(speakers)) < 2:
            return
        result["speaker_eer"] = round(min(
            speaker_eer(dvectors(test, self.encoder, v, self.cfg.smoothing), speakers,
                        self.cfg.seed) for v in variants), 2)
        if retrained is not None:
            result["speaker_eer_retrained"] = round(
                speaker_eer(retrained.embed(test), speakers, self.cfg.seed), 2)


def clean_scores_complete(result: dict, cfg: AttackConfig, part: str) -> bool:
    """Whether clean scores of `part` (`FoldAttacks.clean`) hold every family `cfg` scores
    there: a file without one is made again."""
    return set(cfg.clean_families(part)) <= set(result.get("attackers", {}))


def _on(view: View, source: Workdir | None) -> View:
    """The same utterances with the features of `source`, or the view itself."""
    return view if source is None else View(view.utterances, source.features(view.utterances),
                                            source.cfg)


def validation_score(attacker, valid: View) -> dict:
    """The attacker's UARs on its own validation speakers: what it is chosen by."""
    overall = score(attacker, valid)["overall"]
    return {"uar": round(overall["uar"], 2), "uar_speaker": round(overall["uar_speaker"], 2)}


def attacked(attacker, test: View, valid: View) -> dict:
    """A fitted attacker's scores on `test` (never seen), with its settings (`chosen`) and
    its score on its own validation speakers `valid` (what it is chosen by)."""
    return {**score_unseen(attacker, test), "chosen": attacker.chosen,
            "valid": validation_score(attacker, valid)}


def score_unseen(attacker, test: View) -> dict:
    """`base.score`, refusing an attacker fitted or selected on any of the scored speakers."""
    shared = attacker.fitted_on & test.speakers
    if shared:
        raise ValueError(f"an attacker would be scored on speakers it was fitted or selected "
                         f"on (test speakers must stay unseen): {sorted(shared)}")
    return score(attacker, test)
