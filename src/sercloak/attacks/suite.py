"""The attacker suite of one fold: every family, ignorant and informed, and linkability.

Which speakers an attacker may use (`AttackConfig.pool`):

- ``adversary`` (the paper's protocol): trained on the adversary pool's
  training speakers, selected on its validation speakers;
- ``all``: trained on every non-test speaker (both pools), selected on both
  pools' validation speakers: the attacker who holds the service's own data.

Ignorant attackers are fitted once per fold on clean features and reused for
every cloak; informed ones are fitted per cloak. Test speakers are never
seen by either (`base.check_disjoint`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..baselines import aggregate, mean_std, model_path, model_tag
from ..cloak import Cloak
from ..data import Workdir
from ..train import TrainConfig
from .base import View, check_disjoint, fit_and_score, score
from .cnn import CnnAttacker
from .dvector import VARIANTS, DvectorAttacker, dvectors
from .linkability import speaker_eer
from .speaker_encoder import EncoderUnavailable, SpeakerEncoder
from .stats import StatsAttacker

FAMILIES = ("cnn", "stats", "dvector")
VERSIONS = ("ignorant", "informed")
POOLS = {"adversary": (("adversary_train",), ("adversary_valid",)),
         "all": (("adversary_train", "primary_train"), ("adversary_valid", "primary_valid"))}


@dataclass(frozen=True)
class AttackConfig:
    families: tuple[str, ...] = FAMILIES
    pool: str = "adversary"  # "adversary" (the paper's) or "all" (every non-test speaker)
    informed_draws: int = 2  # noise draws per training utterance (stats, dvector)
    informed_epochs: int = 4  # fine-tuning epochs of the informed cnn
    dvector_max_per_speaker: int | None = 60
    smoothing: int = 21  # frames of the moving average an attacker may apply
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.families) - set(FAMILIES)
        if unknown or self.pool not in POOLS:
            raise ValueError(f"unknown attacker families {sorted(unknown)} or pool {self.pool!r} "
                             f"(families: {FAMILIES}; pools: {tuple(POOLS)})")

    def to_dict(self) -> dict:
        return {**asdict(self), "families": list(self.families)}

    @property
    def suffix(self) -> str:
        """Tells file names of the `all` pool apart: '' for the paper's pool."""
        return "" if self.pool == "adversary" else f"-pool-{self.pool}"


def load_encoder(cfg: AttackConfig) -> tuple[SpeakerEncoder | None, AttackConfig]:
    """The speaker encoder, or None and a config without `dvector` (saying why)."""
    if "dvector" not in cfg.families:
        return None, cfg
    try:
        return SpeakerEncoder.load(), cfg
    except EncoderUnavailable as err:
        print(f"dvector attacker and speaker linkability skipped: {err}")
        families = tuple(f for f in cfg.families if f != "dvector")
        return None, AttackConfig(**{**asdict(cfg), "families": families})


class FoldAttacks:
    """Every attacker of one fold; `folder` keeps the informed networks.

    Scored on the fold's test speakers, or on another part (`test_part`, e.g.
    "primary_valid" to choose settings without touching test speakers).
    """

    def __init__(self, wd: Workdir, fold: int, cfg: AttackConfig, gender_config: TrainConfig,
                 folder: Path, encoder: SpeakerEncoder | None, show_progress: bool = False,
                 test_part: str = "test"):
        self.wd, self.fold, self.cfg, self.folder = wd, fold, cfg, Path(folder)
        self.test_part = test_part
        self.gender_config, self.encoder, self.show_progress = gender_config, encoder, show_progress
        self._ignorant: dict[str, object] = {}

    def _view(self, parts: tuple[str, ...]) -> View:
        utts = [u for p in parts for u in self.wd.part(self.fold, p)]
        return View(utts, self.wd.features(utts), self.wd.cfg)

    @cached_property
    def train(self) -> View:
        return self._view(POOLS[self.cfg.pool][0])

    @cached_property
    def valid(self) -> View:
        return self._view(POOLS[self.cfg.pool][1])

    @cached_property
    def test(self) -> View:
        return self._view((self.test_part,))

    # -- the attackers ------------------------------------------------------------------

    def _cnn_checkpoint(self) -> Path:
        base = model_path(self.wd, model_tag(self.gender_config), self.fold, "gender")
        return base.with_name(f"gender{self.cfg.suffix}.pt")  # the Table 2 f_g for the paper's pool

    def _new(self, family: str, informed: bool, tag: str = ""):
        c = self.cfg
        if family == "stats":
            return StatsAttacker(smoothings=(1, c.smoothing), seed=c.seed)
        if family == "dvector":
            return DvectorAttacker(self.encoder, VARIANTS if informed else ("raw",),
                                   max_per_speaker=c.dvector_max_per_speaker,
                                   smoothing=c.smoothing, seed=c.seed)
        if not informed:
            return CnnAttacker(self._cnn_checkpoint(), self.gender_config,
                               show_progress=self.show_progress)
        saved = self.ignorant("cnn").saved
        config = TrainConfig.from_dict({**saved["train_config"], "max_epochs": c.informed_epochs})
        return CnnAttacker(self.folder / f"{tag}.informed{c.suffix}.pt", config,
                           init_state=saved["state_dict"], show_progress=self.show_progress)

    def ignorant(self, family: str):
        """The family's attacker fitted on clean features (once per fold)."""
        if family not in self._ignorant:
            check_disjoint(self.test, self.train, self.valid)
            attacker = self._new(family, informed=False)
            self._ignorant[family] = attacker.fit(self.train, self.valid)
        return self._ignorant[family]

    # -- scoring ---------------------------------------------------------------------------

    def clean(self) -> dict:
        """Each family on clean test utterances, and the speaker EER."""
        result = {"attackers": {}}
        for family in self.cfg.families:
            attacker = self.ignorant(family)
            result["attackers"][family] = {**score(attacker, self.test), "chosen": attacker.chosen}
        if self.encoder is not None:
            result["speaker_eer"] = self._eer(self.test, ("raw",))
        return result

    def cloaked(self, cloak: Cloak, tag: str) -> dict:
        """Each family, ignorant and informed, on cloaked test utterances; and the speaker EER."""
        c = self.cfg
        return self.protected(self.test.through(cloak, 1, seed=1000 + self.fold),
                              self.train.through(cloak, c.informed_draws, seed=c.seed),
                              self.valid.through(cloak, 1, seed=c.seed + 1), tag)

    def transformed(self, other: Workdir, tag: str) -> dict:
        """The same on features of anonymised audio (`other`: the same utterances, e.g.
        `Workdir.transformed`): the informed attackers train on those features."""
        def view(clean: View) -> View:
            return View(clean.utterances, other.features(clean.utterances), other.cfg)

        return self.protected(view(self.test), view(self.train), view(self.valid), tag)

    def protected(self, test: View, train: View, valid: View, tag: str) -> dict:
        """Each family, ignorant and informed, on protected test utterances (informed ones
        fitted on protected `train`, selected on `valid`); and the speaker EER."""
        result, variants = {"attackers": {}}, ["raw"]
        for family in self.cfg.families:
            ignorant = self.ignorant(family)
            informed = self._new(family, informed=True, tag=tag)
            result["attackers"][family] = {
                "ignorant": {**score(ignorant, test), "chosen": ignorant.chosen},
                "informed": {**fit_and_score(informed, train, valid, test),
                             "chosen": informed.chosen},
            }
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


# -- across folds ---------------------------------------------------------------------------


def aggregate_attackers(per_fold: list[dict], versions: bool) -> dict:
    """{family: aggregate} (clean) or {family: {version: aggregate}} (cloaked)."""
    families = per_fold[0]["attackers"]
    if not versions:
        return {f: aggregate([r["attackers"][f] for r in per_fold]) for f in families}
    return {f: {v: aggregate([r["attackers"][f][v] for r in per_fold]) for v in VERSIONS}
            for f in families}


def fold_uars(result: dict) -> dict[str, float]:
    """{"family.version": gender UAR} of one fold's attackers ("family" alone when clean)."""
    out = {}
    for family, entry in result["attackers"].items():
        if "overall" in entry:
            out[family] = entry["overall"]["uar"]
        else:
            out.update({f"{family}.{v}": entry[v]["overall"]["uar"] for v in VERSIONS})
    return out


def gender_worst(per_fold: list[dict]) -> dict:
    """The privacy figure: per fold the best attacker's gender UAR, over folds.

    `uar` is the mean over folds of each fold's maximum; `attacker` the one
    with the highest mean UAR over folds; `fold_attackers` each fold's best.
    """
    uars = [fold_uars(r) for r in per_fold]
    names = list(uars[0])
    means = {n: float(np.mean([u[n] for u in uars])) for n in names}
    return {"uar": mean_std([max(u.values()) for u in uars]),
            "attacker": max(names, key=means.get),
            "fold_attackers": [max(u, key=u.get) for u in uars]}


def mean_eer(per_fold: list[dict]) -> dict | None:
    values = [r["speaker_eer"] for r in per_fold if r.get("speaker_eer") is not None]
    return mean_std(values) if len(values) == len(per_fold) else None
