"""Choosing the cloak's defaults: noise per mel bin or per cell, σ_max, λ, ρ_init.

    python bench/cloak_choice.py WORKDIR [--folds 0]

WORKDIR is a prepared RAVDESS + nEMO workdir (e.g. from bench/experiment.sh
or `sercloak prepare`). For each variant, trains Cloak and Cloak +
adversarial at SR 0 and 60 (defaults otherwise) and scores them on the
**primary validation speakers** of each fold: speakers no cloak, emotion
model or attacker was trained on (f_θ was early-stopped on them), and not
test speakers, so the choice never looks at the test set. Cloaks, attackers
and scores are saved in WORKDIR and reused by a later `sercloak experiment`
with the same settings. Last line: key=value figures at adversarial SR 60.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sercloak.attacks.suite import AttackConfig
from sercloak.baselines import model_path, model_tag, run_baselines
from sercloak.cli import parse_folds
from sercloak.cloak import Cloak, CloakConfig
from sercloak.cloak.training import CloakTrainConfig
from sercloak.data import Workdir
from sercloak.evaluate import evaluate
from sercloak.experiment import ExperimentConfig, score_grid
from sercloak.train import TrainConfig, load_checkpoint

PART = "primary_valid"
ATTACKS = ("emotion", "gender_ignorant", "gender_informed")  # f_θ and the paper's cnn attacker
VARIANTS = {  # name: (cloak, λ)
    "mel": (CloakConfig(shape="mel", sigma_max=5.0), 0.1),
    "cell": (CloakConfig(shape="cell", sigma_max=5.0), 0.1),
    "mel_sigma2": (CloakConfig(shape="mel", sigma_max=2.0), 0.1),
    "mel_lam0.01": (CloakConfig(shape="mel", sigma_max=5.0), 0.01),
    "mel_lam0.001": (CloakConfig(shape="mel", sigma_max=5.0), 0.001),
    "mel_lam0.01_rho-2": (CloakConfig(shape="mel", sigma_max=5.0, rho_init=-2.0), 0.01),
}


def clean_uar(wd: Workdir, folds: list[int], preset: str) -> tuple[float, float]:
    """f_θ and f_g on clean utterances of the same speakers: the reference row."""
    emotion, gender = [], []
    for fold in folds:
        for task, out in (("emotion", emotion), ("gender", gender)):
            model, _ = load_checkpoint(model_path(wd, preset, fold, task), wd.cfg)
            data = wd.segments(fold, PART, task, train=False)
            out.append(evaluate(model, data)["overall"]["uar"])
    return sum(emotion) / len(emotion), sum(gender) / len(gender)


def what_costs_emotion(wd: Workdir, folds: list[int], preset: str,
                       run_dir: Path) -> dict[str, float]:
    """f_θ's UAR under the SR 0 Cloak, and with only its offset μ or only its noise σ·ε."""
    scores = {"sigma_mean": [], "both": [], "mu_only": [], "sigma_only": []}
    for fold in folds:
        f_theta, _ = load_checkpoint(model_path(wd, preset, fold, "emotion"), wd.cfg)
        data = wd.segments(fold, PART, "emotion", train=False)
        cloak = Cloak.load(run_dir / f"fold{fold}" / "cloak_sr0.npz", wd.cfg).eval()
        scores["sigma_mean"].append(cloak.sigma().mean().item())
        torch.manual_seed(1000 + fold)
        with torch.no_grad():
            scores["both"].append(evaluate(f_theta, data, cloak)["overall"]["uar"])
            mu = cloak.mu.clone()
            cloak.mu.zero_()
            scores["sigma_only"].append(evaluate(f_theta, data, cloak)["overall"]["uar"])
            cloak.mu.copy_(mu)
            cloak.rho.fill_(-50.0)  # σ = σ_min = 0
            scores["mu_only"].append(evaluate(f_theta, data, cloak)["overall"]["uar"])
    return {k: sum(v) / len(v) for k, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--folds", default="0")
    args = parser.parse_args()
    wd, folds = Workdir.open(args.workdir), parse_folds(args.folds)
    configs = {t: TrainConfig(task=t) for t in ("emotion", "gender")}  # measured with the paper's
    run_baselines(wd, folds, configs, show_progress=False)
    print(f"UAR % on {PART} speakers of folds {folds}")
    print("| variant | setting | SR % | emotion | gender ignorant | gender informed |")
    print("|---|---|---|---|---|---|")
    preset = model_tag(configs["emotion"])  # e.g. light-paper: where the models live
    emotion, gender = clean_uar(wd, folds, preset)
    print(f"| – | clean | – | {emotion:.1f} | {gender:.1f} | {gender:.1f} |")
    figures = {"clean_emotion_uar": round(emotion, 1), "clean_gender_uar": round(gender, 1)}
    costs = {}
    for name, (cloak, lam) in VARIANTS.items():
        cfg = ExperimentConfig(cloak=cloak, cloak_train=CloakTrainConfig(lam=lam), ratios=(0, 60),
                               attacks=AttackConfig(families=("cnn",)))
        grid, _, run_dir = score_grid(wd, folds, configs, cfg, PART, show_progress=False)
        costs[name] = what_costs_emotion(wd, folds, preset, run_dir)
        for e in grid:
            uar = {k: e[k]["uar"]["mean"] for k in ATTACKS}
            setting = "Cloak + adv." if e["adversarial"] else "Cloak"
            print(f"| {name} | {setting} | {e['suppression_ratio']} | "
                  + " | ".join(f"{v:.1f}" for v in uar.values()) + " |")
            if e["adversarial"] and e["suppression_ratio"] == 60:
                figures.update({f"{name}_{k}_uar": round(v, 1) for k, v in uar.items()})
    print(f"\nEmotion UAR % on {PART} under the SR 0 Cloak: what costs it")
    print("| variant | mean σ | μ and σ·ε | μ only | σ·ε only |")
    print("|---|---|---|---|---|")
    for name, c in costs.items():
        print(f"| {name} | {c['sigma_mean']:.2f} | {c['both']:.1f} | {c['mu_only']:.1f} | "
              f"{c['sigma_only']:.1f} |")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
