"""How strong each gender attacker is on clean features, and how linkable speakers are.

    python bench/attackers.py [--workdir DIR] [--folds 0-4] [--attacker-pool adversary|all]

On RAVDESS + nEMO from ../shared/corpora (a fresh temporary workdir is
prepared when --workdir is omitted; the baseline f_g of each fold is trained
if missing), fits every attacker family of `sercloak.attacks` on clean
features of its pool and scores gender UAR on each fold's test speakers; the
speaker EER comes from d-vector cosines among the test utterances. Prints a
table per fold, per corpus and overall. Last line: key=value figures (5-fold
means). Target: the strongest attacker >= 95% gender UAR.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sercloak.attacks.suite import FAMILIES, POOLS, AttackConfig, FoldAttacks, load_encoder
from sercloak.baselines import train_fold
from sercloak.cli import parse_folds
from sercloak.data import Workdir
from sercloak.experiment import summarise_clean
from sercloak.prepare import prepare
from sercloak.train import TrainConfig

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def open_workdir(path: Path | None) -> Workdir:
    if path is not None and (path / "summary.json").is_file():
        return Workdir.open(path)
    if not (CORPORA / "ravdess").is_dir() or not (CORPORA / "nemo").is_dir():
        raise SystemExit(f"needs RAVDESS and nEMO in {CORPORA}")
    path = path or Path(tempfile.mkdtemp(prefix="sercloak-attackers-"))
    prepare({"ravdess": CORPORA / "ravdess", "nemo": CORPORA / "nemo"}, path,
            show_progress=False)
    return Workdir.open(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--folds", default="0-4")
    parser.add_argument("--attacker-pool", choices=list(POOLS), default="adversary")
    args = parser.parse_args()
    started = time.perf_counter()
    wd = open_workdir(args.workdir)
    encoder, cfg = load_encoder(AttackConfig(pool=args.attacker_pool))
    gender_cfg = TrainConfig(task="gender")
    runs = []
    for fold in parse_folds(args.folds):
        train_fold(wd, fold, gender_cfg, show_progress=False)  # reused when present
        suite = FoldAttacks(wd, fold, cfg, gender_cfg, wd.root / "attackers" / f"fold{fold}",
                            encoder)
        run = suite.clean()
        runs.append(run)
        figures = ", ".join(f"{f} {run['attackers'][f]['overall']['uar']:.1f}"
                            for f in cfg.families)
        eer = run.get("speaker_eer")
        print(f"fold {fold}: gender UAR {figures}; speaker EER {eer}; "
              f"chosen {[run['attackers'][f]['chosen'] for f in cfg.families]}")
    summary = summarise_clean(runs)
    corpora = sorted({c for r in runs for f in cfg.families
                      for c in r["attackers"][f]["per_corpus"]})
    print(f"\n| attacker ({args.attacker_pool} pool) | all | " + " | ".join(corpora) + " |")
    print("|---" * (len(corpora) + 2) + "|")
    for family in cfg.families:
        agg = summary["attackers"][family]
        cells = [f"{agg['uar']['mean']:.1f} ± {agg['uar']['std']:.1f}"]
        cells += [f"{agg['per_corpus'][c]['uar']['mean']:.1f}" for c in corpora]
        print(f"| {family} | " + " | ".join(cells) + " |")
    worst = summary["gender_worst"]
    print(f"\nworst case {worst['uar']['mean']:.1f} ± {worst['uar']['std']:.1f} "
          f"({worst['attacker']}); speaker EER {summary.get('speaker_eer')}")
    figures = {f"{f}_uar": summary["attackers"][f]["uar"]["mean"] for f in FAMILIES
               if f in summary["attackers"]}
    if "speaker_eer" in summary:
        figures["speaker_eer"] = summary["speaker_eer"]["mean"]
    figures["worst_uar"] = worst["uar"]["mean"]
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" pool={args.attacker_pool}"
          f" folds={len(runs)} workdir={wd.root}")


if __name__ == "__main__":
    main()
