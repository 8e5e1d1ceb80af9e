"""`sercloak experiment`: the whole privacy–utility grid, resumable, with a report.

For every fold: the clean baselines (f_θ, f_g), then for Cloak and Cloak +
adversarial training a perturbation-trained cloak (SR = 0) and suppression
cloaks at SR = 20, 40, 60%, each scored by

- emotion: the frozen f_θ on cloaked test utterances (utility);
- the attacker suite (`attacks/`): the `cnn`, `stats` and `dvector` gender
  attackers, each *ignorant* (fitted on clean features) and *informed*
  (fitted on cloaked features of its own pool, selected on cloaked
  validation speakers), on cloaked test utterances; the worst case over all
  of them (`gender_worst`, the privacy figure); and the speaker EER among
  cloaked test utterances (linkability). `gender_ignorant` and
  `gender_informed` are the `cnn` attacker: the paper's protocol.

Every cloak is saved as a cloak file and every scored setting as JSON under
``<workdir>/cloaks/<model>-<recipe>/<shape>-<hash>/fold<K>/``, the hash covering every
setting that shapes a cloak (cloak, its training, the baselines'), so an
interrupted run skips what is done and a run with other settings never
reuses it. Scores are reused only when made with the same attacker settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .attacks.speaker_encoder import SpeakerEncoder
from .attacks.suite import (
    AttackConfig,
    FoldAttacks,
    aggregate_attackers,
    gender_worst,
    load_encoder,
    mean_eer,
)
from .baselines import aggregate, model_path, model_tag, run_baselines
from .cloak import Cloak, CloakConfig
from .cloak_train import CloakTrainConfig, new_adversary, train_perturbation, train_suppression
from .data import Workdir
from .evaluate import evaluate
from .report import write_report
from .train import TrainConfig, load_checkpoint, pick_device

RATIOS = (0, 20, 40, 60)
CNN_KEYS = {"gender_ignorant": "ignorant", "gender_informed": "informed"}  # the paper's attacker


@dataclass(frozen=True)
class ExperimentConfig:
    cloak: CloakConfig = CloakConfig()
    cloak_train: CloakTrainConfig = CloakTrainConfig()
    attacks: AttackConfig = AttackConfig()
    ratios: tuple[int, ...] = RATIOS

    def to_dict(self) -> dict:
        return {"cloak": self.cloak.to_dict(), "cloak_train": self.cloak_train.to_dict(),
                "attacks": self.attacks.to_dict(), "ratios": list(self.ratios)}


def run_tag(cfg: ExperimentConfig, baseline_configs: dict[str, TrainConfig]) -> str:
    """Folder name of one configuration's cloaks: other settings never reuse them."""
    cloak = cfg.cloak.to_dict()
    if cloak["kind"] == "noise":  # the paper's kind hashes as before `kind` existed: reused
        del cloak["kind"]
    everything = {"cloak": cloak, "cloak_train": cfg.cloak_train.to_dict(),
                  "baselines": {t: c.to_dict() for t, c in sorted(baseline_configs.items())}}
    # neither the ratios run nor the attackers change what a cloak is
    digest = hashlib.sha1(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.cloak.shape}-{digest}"


def setting_name(ratio: int, adversarial: bool) -> str:
    return f"{'adversarial' if adversarial else 'cloak'}_sr{ratio}"


def method_name(kind: str, adversarial: bool) -> str:
    """results.json's `method`: cloak, cloak_adversarial, cloak_temporal, ..."""
    base = "cloak" if kind == "noise" else f"cloak_{kind}"
    return f"{base}_adversarial" if adversarial else base


class FoldRunner:
    """Cloaks and attacks of one fold; everything it makes is saved and reused."""

    def __init__(self, wd: Workdir, fold: int, baseline_configs: dict[str, TrainConfig],
                 cfg: ExperimentConfig, run_dir: Path, encoder: SpeakerEncoder | None,
                 show_progress: bool, part: str = "test"):
        self.wd, self.fold, self.cfg, self.part = wd, fold, cfg, part
        self.preset = baseline_configs["emotion"].model
        self.show_progress = show_progress
        self.dir = run_dir / f"fold{fold}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device()
        self.f_theta, _ = load_checkpoint(
            model_path(wd, model_tag(baseline_configs["emotion"]), fold, "emotion"), wd.cfg,
                                          self.device)
        self.attacks = FoldAttacks(wd, fold, cfg.attacks, baseline_configs["gender"], self.dir,
                                   encoder, show_progress, test_part=part)
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
        psi = (new_adversary(self.f_theta, self.preset, self.cfg.cloak_train.seed)
               if adversarial else None)
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

    def _cached(self, name: str, compute) -> dict:
        """A JSON result in the fold's folder, reused only if made by the same attackers."""
        suffix = self.cfg.attacks.suffix + ("" if self.part == "test" else f".on-{self.part}")
        out = self.dir / f"{name}{suffix}.json"
        attack_config = self.cfg.attacks.to_dict()
        if out.is_file():
            result = json.loads(out.read_text())
            if result.get("attack_config") == attack_config:
                return result
        result = {**compute(), "attack_config": attack_config}
        out.write_text(json.dumps(result, indent=1))
        return result

    def clean(self) -> dict:
        """Every attacker on clean utterances of the scored part."""
        return self._cached("clean", self.attacks.clean)

    def score(self, ratio: int, adversarial: bool) -> dict:
        """f_θ and every attacker on cloaked utterances of the scored part (test by default).

        Any other part is for choosing settings without touching test
        speakers: "primary_valid" speakers were seen by no cloak and no
        attacker of the paper's pool.
        """
        name = setting_name(ratio, adversarial)

        def compute() -> dict:
            cloak = self.cloak(ratio, adversarial).eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(1000 + self.fold)  # the evaluation's noise draws
                emotion = evaluate(self.f_theta, self.segments(self.part, "emotion", False),
                                   cloak, self.device)
            result = {"method": method_name(self.cfg.cloak.kind, adversarial),
                      "suppression_ratio": cloak.suppression_ratio, "emotion": emotion,
                      **self.attacks.cloaked(cloak, name)}
            if "cnn" in result["attackers"]:
                result.update({k: result["attackers"]["cnn"][v] for k, v in CNN_KEYS.items()})
            return result

        return self._cached(name, compute)


def summarise_setting(runs: list[dict]) -> dict:
    """One setting's fold results -> mean ± std of every model and attacker."""
    return {"emotion": aggregate(runs, "emotion"),
            **{k: aggregate(runs, k) for k in CNN_KEYS if k in runs[0]},
            **summarise_attacks(runs, versions=True)}


def summarise_clean(runs: list[dict]) -> dict:
    """The clean attackers' fold results -> `baseline.attackers`, `speaker_eer`, worst case."""
    return summarise_attacks(runs, versions=False)


def summarise_attacks(runs: list[dict], versions: bool) -> dict:
    entry = {"attackers": aggregate_attackers(runs, versions), "gender_worst": gender_worst(runs)}
    eer = mean_eer(runs)
    return entry if eer is None else {**entry, "speaker_eer": eer}


def score_grid(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
               cfg: ExperimentConfig, part: str = "test", show_progress: bool = True,
               encoder: SpeakerEncoder | None = None) -> tuple[list[dict], dict, Path]:
    """Every setting of the grid on `folds`, aggregated; the clean attackers; the cloak folder.

    Needs the baselines of `folds` trained (`run_baselines`). `encoder`: the
    speaker encoder, loaded here when the `dvector` family is asked for.
    """
    run_dir = wd.root / "cloaks" / model_tag(baseline_configs["emotion"]) / run_tag(
        cfg, baseline_configs)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    if encoder is None:
        encoder, attacks = load_encoder(cfg.attacks)
        cfg = replace(cfg, attacks=attacks)
    clean_runs, per_setting = [], {}
    for fold in folds:
        runner = FoldRunner(wd, fold, baseline_configs, cfg, run_dir, encoder, show_progress,
                            part)
        clean_runs.append(runner.clean())
        for adversarial in (False, True):
            for ratio in cfg.ratios:
                per_setting.setdefault((ratio, adversarial), []).append(
                    runner.score(ratio, adversarial))
    grid = [{"method": method_name(cfg.cloak.kind, adversarial), "suppression_ratio": ratio,
             "adversarial": adversarial, **summarise_setting(runs)}
            for (ratio, adversarial), runs in per_setting.items()]
    return grid, summarise_clean(clean_runs), run_dir


def results_file(wd: Workdir, attacks: AttackConfig) -> Path:
    return wd.root / f"results{attacks.suffix}.json"


def run_experiment(wd: Workdir, folds: list[int], baseline_configs: dict[str, TrainConfig],
                   cfg: ExperimentConfig = ExperimentConfig(),
                   show_progress: bool = True) -> dict:
    """Baselines, then the cloak grid; writes results.json, report.md and figures."""
    started = time.perf_counter()
    baseline = run_baselines(wd, folds, baseline_configs, show_progress)
    encoder, attacks = load_encoder(cfg.attacks)
    cfg = replace(cfg, attacks=attacks)
    grid, clean, run_dir = score_grid(wd, folds, baseline_configs, cfg, "test", show_progress,
                                      encoder)
    results = {
        "baseline": {**baseline, **clean},
        "cloak": grid,
        "config": {**cfg.to_dict(), "model": baseline["model"], "recipe": baseline["recipe"],
                   "normalise": wd.cfg.normalise, "folds": folds,
                   "cloak_dir": str(run_dir.relative_to(wd.root))},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    results_file(wd, cfg.attacks).write_text(json.dumps(results, indent=1))
    write_report(wd, results)
    return results
