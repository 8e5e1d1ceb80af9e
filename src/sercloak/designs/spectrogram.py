"""The spectrogram designs: the device sends log-mel features, protected by a cloak, by a
transform of the audio before features, or by both.

- a cloak (`cloak/`): trained against the frozen f_θ on its own training
  speakers, in stage 1 (perturbation) and stage 2 (suppression at SR > 0),
  without or with adversaries ψ;
- a transform (`anonymise.py`, `voicenorm.py`): the features of the
  transformed audio, built once per workdir; with `cloak_after`, a cloak is
  then trained on those features;
- the service's adaptation (`adapt_epochs`): f_θ fine-tuned on the protected
  features of its own training speakers.

Every attacker family reads what is sent: ignorant (fitted on clean
features) and informed (fitted on protected features of its own speakers).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, torch_save
from ..cloak import Cloak, new_adversary
from ..cloak.saliency import gender_over_emotion
from ..cloak.training import train_perturbation, train_suppression
from ..layout import Setting, setting_name
from ..models import CnnRnn
from ..points import Point
from ..runner import FoldRunner
from ..train import train


class CloakRunner(FoldRunner):
    """Cloaks, transforms and adaptation of one seed and fold."""

    # -- cloaks ----------------------------------------------------------------------------

    def _adversaries(self, adversarial: bool) -> dict[str, torch.nn.Module]:
        if not adversarial:
            return {}
        return {family: new_adversary(self.f_theta, family, self.emotion_config.model,
                                      self.seed)
                for family in self.cfg.cloak_train.adversaries}

    def _training_set(self):
        return self.segments(self.parts[0], "emotion", True, self.base_wd)

    def perturbed(self, adversarial: bool) -> tuple[Cloak, dict[str, torch.nn.Module]]:
        """The stage-1 cloak (and its adversaries ψ), trained once and saved."""
        files = self.setting(setting_name(0, adversarial))
        adversaries = self._adversaries(adversarial)
        if files.cloak.is_file() and all(files.psi(f).is_file() for f in adversaries):
            cloak = Cloak.load(files.cloak, self.wd.cfg).to(self.device)
            for family, psi in adversaries.items():
                psi.load_state_dict(torch.load(files.psi(family), weights_only=True))
            return cloak, adversaries
        files.folder.mkdir(parents=True, exist_ok=True)
        cloak = Cloak(self.cfg.cloak, self.f_theta.feat_mean, self.f_theta.feat_std,
                      self.wd.cfg.segment_frames).to(self.device)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        data = self._training_set()
        history = train_perturbation(cloak, self.f_theta, data, tcfg, adversaries,
                                     self.show_progress)
        for family, psi in adversaries.items():
            torch_save(psi.state_dict(), files.psi(family))
        cloak.meta = {"history": history, "train": tcfg.to_dict(), "speakers": data.speakers}
        cloak.save(files.cloak, self.wd.cfg, extra=cloak.meta)
        return cloak, adversaries

    def cloak(self, ratio: int, adversarial: bool) -> Cloak:
        file = self.setting(setting_name(ratio, adversarial)).cloak
        if file.is_file():
            return Cloak.load(file, self.wd.cfg).to(self.device)
        cloak, adversaries = self.perturbed(adversarial)
        if ratio == 0:
            return cloak
        cloak, adversaries = copy.deepcopy(cloak), copy.deepcopy(adversaries)
        data = self._training_set()
        scores = (gender_over_emotion(cloak, self.f_theta, data, self.seed)
                  if self.cfg.cloak.mask_by == "saliency" else None)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        history = train_suppression(cloak, self.f_theta, data, ratio, tcfg, adversaries,
                                    self.show_progress, scores)
        cloak.meta = {"history": history, "train": tcfg.to_dict(), "speakers": data.speakers}
        if scores is not None:
            cloak.meta["mask_scores"] = scores.flatten().tolist()
        cloak.save(file, self.wd.cfg, extra=cloak.meta)
        return cloak

    @staticmethod
    def training_group(cfg, point: Point) -> str | None:
        if cfg.transform is not None and not cfg.cloak_after:
            return None  # the transform alone: nothing to train
        return "adversarial" if point.adversarial else "plain"  # one stage-1 cloak each

    @staticmethod
    def trained_files(cfg, point: Point, setting: Setting) -> list[Path]:
        return [] if CloakRunner.training_group(cfg, point) is None else [setting.cloak]

    def train(self, points: list[Point]) -> None:
        for point in sorted(points, key=lambda p: p.suppression_ratio):
            self.cloak(point.suppression_ratio, point.adversarial)

    # -- the service's emotion model ---------------------------------------------------------

    def emotion_model(self, name: str, cloak: Cloak | None) -> CnnRnn:
        """f_θ, or with `adapt_epochs` its copy fine-tuned on protected features of its own
        training speakers (through `cloak`, or of the anonymised audio)."""
        if not self.cfg.adapt_epochs:
            return self.f_theta
        out = self.setting(name).adapted(self.cfg.adapt_epochs)
        config = replace(self.emotion_config, max_epochs=self.cfg.adapt_epochs)
        done = out.is_file() and load_checkpoint(out)[1]["train_config"] == config.to_dict()
        if not done:
            wd = self.base_wd
            train(self.segments(self.parts[0], "emotion", True, wd),
                  self.segments(self.parts[1], "emotion", False, wd), config, self.wd.cfg,
                  out, self.show_progress, transform=cloak,
                  init_state=copy.deepcopy(self.f_theta.state_dict()), curve=False)
        return load_checkpoint(out, self.wd.cfg, self.device)[0]

    def score(self, point: Point, part: str = "test") -> dict:
        """f_θ (or its adapted copy) and every attacker on protected utterances of `part`."""
        cloak = None
        if self.cfg.transform is None or self.cfg.cloak_after:
            cloak = self.cloak(point.suppression_ratio, point.adversarial).eval()
        name = point.name
        files = self.setting(name)

        def compute() -> dict:
            attacks = self.attacks.protected(files, part, self.protected_wd, cloak)
            return {"suppression_ratio": 0.0 if cloak is None else cloak.suppression_ratio,
                    "emotion": self._emotion(self.f_theta, cloak, part, protected=True),
                    **attacks, **({} if cloak is None else {"training": _last_epoch(cloak)})}

        result = self._cached(files.scores(part), compute)
        if self.cfg.adapt_epochs:  # the adapted f_θ's emotion figure, cached on its own
            variant = f"adapted{self.cfg.adapt_epochs}"
            adapted = self._cached(files.scores(part, variant), lambda: {
                "emotion": self._emotion(self.emotion_model(name, cloak), cloak, part, True)})
            result = {**result, "emotion": adapted["emotion"],
                      "emotion_unadapted": result["emotion"]}
        return result


def _last_epoch(cloak: Cloak) -> dict:
    """The last training epoch's figures in a cloak file (σ, losses, adversary accuracy)."""
    history = getattr(cloak, "meta", {}).get("history") or [{}]
    return history[-1]
