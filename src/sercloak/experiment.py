"""`sercloak experiment`: the whole privacy–utility grid, resumable, with a report.

For every fold: the clean baselines (f_θ, f_g), then for Cloak and Cloak +
adversarial training a perturbation-trained cloak (SR = 0) and suppression
cloaks at SR = 20, 40, 60%, each scored by

- emotion: the frozen f_θ on cloaked test utterances (utility);
- gender_ignorant: f_g, trained on clean adversary-pool data, on cloaked test
  utterances (the paper's attacker);
- gender_informed: f_g fine-tuned on cloaked adversary-pool data (fresh noise
  every batch), selected on cloaked adversary validation speakers, on cloaked
  test utterances (an attacker who knows the cloak; the paper never runs it).

Every cloak is saved as a cloak file and every scored setting as JSON under
``<workdir>/cloaks/<preset>/<shape>-<hash>/fold<K>/``, the hash covering every
setting (cloak, its training, the baselines'), so an interrupted run skips
what is done and a run with other settings never reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .baselines import aggregate, model_path, run_baselines
from .cloak import Cloak, CloakConfig
from .cloak_train import CloakTrainConfig, new_adversary, train_perturbation, train_suppression
from .data import Workdir
from .evaluate import evaluate
from .report import write_report
from .train import TrainConfig, load_checkpoint, pick_device, train

RATIOS = (0, 20, 40, 60)
ATTACKS = ("emotion", "gender_ignorant", "gender_informed")


@dataclass(frozen=True)
class ExperimentConfig:
    cloak: CloakConfig = CloakConfig()
    cloak_train: CloakTrainConfig = CloakTrainConfig()
    informed_epochs: int = 4  # fine-tuning epochs of the informed attacker
    ratios: tuple[int, ...] = RATIOS

    def to_dict(self) -> dict:
        return {"cloak": self.cloak.to_dict(), "cloak_train": self.cloak_train.to_dict(),
                "informed_epochs": self.informed_epochs, "ratios": list(self.ratios)}


def run_tag(cfg: ExperimentConfig, baseline_configs: dict[str, TrainConfig]) -> str:
    """Folder name of one configuration's cloaks: other settings never reuse them."""
    everything = {**cfg.to_dict(), "baselines": {t: c.to_dict() for t, c in
                                                 sorted(baseline_configs.items())}}
    del everything["ratios"]  # a cloak at SR 60 does not depend on which others are run
    digest = hashlib.sha1(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.cloak.shape}-{digest}"


def setting_name(ratio: int, adversarial: bool) -> str:
    return f"{'adversarial' if adversarial else 'cloak'}_sr{ratio}"


class FoldRunner:
    """Cloaks and attacks of one fold; everything it makes is saved and reused."""

    def __init__(self, wd: Workdir, fold: int, preset: str, cfg: ExperimentConfig,
                 run_dir: Path, show_progress: bool):
        self.wd, self.fold, self.preset, self.cfg = wd, fold, preset, cfg
        self.show_progress = show_progress
        self.dir = run_dir / f"fold{fold}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device()
        self.f_theta, _ = load_checkpoint(model_path(wd, preset, fold, "emotion"), wd.cfg,
                                          self.device)
        self.f_g_file = model_path(wd, preset, fold, "gender")
        self.f_g, self.f_g_ckpt = load_checkpoint(self.f_g_file, wd.cfg, self.device)
        self._sets: dict[tuple, object] = {}

    def segments(self, part: str, task: str, train_hop: bool):
        key = (part, task, train_hop)
        if key not in self._sets:
            self._sets[key] = self.wd.segments(self.fold, part, task, train=train_hop)
        return self._sets[key]

    def perturbed(self, adversarial: bool) -> tuple[Cloak, torch.nn.Module | None]:
        """The stage-1 cloak (and its adversary ψ), trained once and saved."""
        file = self.dir / f"{setting_name(0, adversarial)}.npz"
        psi_file = file.with_suffix(".psi.pt")
        psi = new_adversary(self.f_theta, self.preset) if adversarial else None
        if file.is_file() and (psi is None or psi_file.is_file()):
            cloak = Cloak.load(file, self.wd.cfg).to(self.device)
            if psi is not None:
                psi.load_state_dict(torch.load(psi_file, weights_only=True))
            return cloak, psi
        cloak = Cloak(self.cfg.cloak, self.f_theta.feat_mean, self.f_theta.feat_std,
                      self.wd.cfg.segment_frames).to(self.device)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        history = train_perturbation(cloak, self.f_theta, self.segments(
            "primary_train", "emotion", True), tcfg, psi, self.show_progress)
        if psi is not None:
            torch.save(psi.state_dict(), psi_file)
        cloak.save(file, self.wd.cfg, extra={"history": history, "train": tcfg.to_dict()})
        return cloak, psi

    def cloak(self, ratio: int, adversarial: bool) -> Cloak:
        file = self.dir / f"{setting_name(ratio, adversarial)}.npz"
        if file.is_file():
            return Cloak.load(file, self.wd.cfg).to(self.device)
        cloak, psi = self.perturbed(adversarial)
        if ratio == 0:
            return cloak
        cloak, psi = copy.deepcopy(cloak), copy.deepcopy(psi)
        tcfg = replace(self.cfg.cloak_train, adversarial=adversarial)
        history = train_suppression(cloak, self.f_theta, self.segments(
            "primary_train", "emotion", True), ratio, tcfg, psi, self.show_progress)
        cloak.save(file, self.wd.cfg, extra={"history": history, "train": tcfg.to_dict()})
        return cloak

    def informed_attacker(self, cloak: Cloak, name: str) -> torch.nn.Module:
        """f_g fine-tuned on cloaked adversary-pool data, selected on cloaked validation."""
        out = self.dir / f"{name}.informed.pt"
        cfg = TrainConfig.from_dict({**self.f_g_ckpt["train_config"],
                                     "max_epochs": self.cfg.informed_epochs})
        if not out.is_file():
            train(self.segments("adversary_train", "gender", True),
                  self.segments("adversary_valid", "gender", False), cfg, self.wd.cfg, out,
                  self.show_progress, transform=cloak, init_state=self.f_g_ckpt["state_dict"])
        model, _ = load_checkpoint(out, self.wd.cfg, self.device)
        return model

    def score(self, ratio: int, adversarial: bool, part: str = "test") -> dict:
        """All three models on cloaked utterances of `part` (test speakers by default).

        Any other part is for choosing settings without touching test
        speakers: "primary_valid" speakers were seen by no cloak and no attacker.
        """
        name = setting_name(ratio, adversarial)
        out = self.dir / (f"{name}.json" if part == "test" else f"{name}.on-{part}.json")
        if out.is_file():
            return json.loads(out.read_text())
        cloak = self.cloak(ratio, adversarial).eval()
        informed = self.informed_attacker(cloak, name)
        torch.manual_seed(1000 + self.fold)  # the evaluation's noise draws, reproducible
        on_emotion = self.segments(part, "emotion", False)
        on_gender = self.segments(part, "gender", False)
        with torch.no_grad():
            result = {
                "emotion": evaluate(self.f_theta, on_emotion, cloak, self.device),
                "gender_ignorant": evaluate(self.f_g, on_gender, cloak, self.device),
                "gender_informed": evaluate(informed, on_gender, cloak, self.device),
                "suppression_ratio": cloak.suppression_ratio,
            }
        out.write_text(json.dumps(result, indent=1))
        return result


def score_grid(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
               cfg: ExperimentConfig, part: str = "test",
               show_progress: bool = True) -> tuple[list[dict], Path]:
    """Every setting of the grid on `folds`, aggregated; and the folder of its files.

    Needs the baselines of `folds` trained (`run_baselines`).
    """
    preset = baseline_configs["emotion"].model
    run_dir = wd.root / "cloaks" / preset / run_tag(cfg, baseline_configs)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    per_setting: dict[tuple[int, bool], list[dict]] = {}
    for fold in folds:
        runner = FoldRunner(wd, fold, preset, cfg, run_dir, show_progress)
        for adversarial in (False, True):
            for ratio in cfg.ratios:
                per_setting.setdefault((ratio, adversarial), []).append(
                    runner.score(ratio, adversarial, part))
    grid = [{"suppression_ratio": ratio, "adversarial": adversarial,
             **{a: aggregate(runs, a) for a in ATTACKS}}
            for (ratio, adversarial), runs in per_setting.items()]
    return grid, run_dir


def run_experiment(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
                   cfg: ExperimentConfig = ExperimentConfig(),
                   show_progress: bool = True) -> dict:
    """Baselines, then the cloak grid; writes results.json, report.md and figures."""
    started = time.perf_counter()
    preset = baseline_configs["emotion"].model
    baseline = run_baselines(wd, folds, baseline_configs, show_progress)
    grid, run_dir = score_grid(wd, folds, baseline_configs, cfg, "test", show_progress)
    results = {
        "baseline": baseline,
        "cloak": grid,
        "config": {**cfg.to_dict(), "model": preset, "folds": folds,
                   "cloak_dir": str(run_dir.relative_to(wd.root))},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    (wd.root / "results.json").write_text(json.dumps(results, indent=1))
    write_report(wd, results)
    return results
