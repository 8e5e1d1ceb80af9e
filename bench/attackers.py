"""How strong each gender attacker is on clean features, and how linkable speakers are.

    python bench/attackers.py [--workdir DIR] [--folds 0-4] [--protocol paper|shared]

On RAVDESS + nEMO from ../shared/corpora (a fresh temporary workdir is
prepared when --workdir is omitted; the baseline f_g of each fold is trained
if missing), fits every attacker family of `sercloak.attacks` on clean
features of the protocol's attacker speakers and scores gender UAR (speaker-
balanced, and pooled) on each fold's test speakers; the
speaker EER comes from d-vector cosines among the test utterances. Prints a
table per fold, per corpus and overall. Last line: key=value figures (5-fold
means). Target: the strongest attacker >= 95% gender UAR.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sercloak.attacks.suite import FAMILIES, AttackConfig, FoldAttacks, load_encoder
from sercloak.baselines import train_fold
from sercloak.cli import parse_folds
from sercloak.data import Workdir
from sercloak.folds import PROTOCOLS
from sercloak.prepare import prepare
from sercloak.results import summarise_attacks
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
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paper")
    args = parser.parse_args()
    started = time.perf_counter()
    wd = open_workdir(args.workdir)
    encoder, cfg = load_encoder(AttackConfig())
    gender_cfg = TrainConfig(task="gender")  # the paper's recipe, as measured in issue 8
    runs = []
    for fold in parse_folds(args.folds):
        f_g = train_fold(wd, fold, gender_cfg, args.protocol, show_progress=False)  # or reused
        suite = FoldAttacks(wd, fold, cfg, f_g, gender_cfg, args.protocol, encoder)
        run = suite.clean()
        runs.append(run)
        figures = ", ".join(f"{f} {run['attackers'][f]['overall']['uar_speaker']:.1f}"
                            for f in cfg.families)
        eer = run.get("speaker_eer")
        print(f"fold {fold}: gender UAR {figures}; speaker EER {eer}; "
              f"chosen {[run['attackers'][f]['chosen'] for f in cfg.families]}")
    summary = summarise_attacks([runs], versions=False)
    corpora = sorted({c for r in runs for f in cfg.families
                      for c in r["attackers"][f]["per_corpus"]})
    print(f"\n| attacker ({args.protocol} protocol), speaker-balanced UAR | all | pooled | "
          + " | ".join(corpora) + " |")
    print("|---" * (len(corpora) + 3) + "|")
    for family in cfg.families:
        agg = summary["attackers"][family]
        cells = [f"{agg['uar_speaker']['mean']:.1f} ± {agg['uar_speaker']['std']:.1f}",
                 f"{agg['uar']['mean']:.1f}"]
        cells += [f"{agg['per_corpus'][c]['uar_speaker']['mean']:.1f}" for c in corpora]
        print(f"| {family} | " + " | ".join(cells) + " |")
    privacy = summary["gender_privacy"]
    chosen, upper = privacy["uar_speaker"], privacy["upper_bound"]["uar_speaker"]
    print(f"\nattacker chosen on validation {chosen['mean']:.1f} {chosen['ci95']} "
          f"({privacy['attacker']}, chance {chosen['chance']}); upper bound {upper['mean']:.1f} "
          f"{upper['ci95']}; speaker EER {summary.get('speaker_eer')}")
    figures = {}
    for f in FAMILIES:
        if f in summary["attackers"]:
            figures[f"{f}_uar_speaker"] = summary["attackers"][f]["uar_speaker"]["mean"]
            figures[f"{f}_uar"] = summary["attackers"][f]["uar"]["mean"]
    if "speaker_eer" in summary:
        figures["speaker_eer"] = summary["speaker_eer"]["mean"]
    figures["chosen_uar_speaker"] = chosen["mean"]
    figures["chosen_p_vs_chance"] = chosen["chance"]["p"]
    figures["upper_bound_uar_speaker"] = upper["mean"]
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" protocol={args.protocol}"
          f" folds={len(runs)} workdir={wd.root}")


if __name__ == "__main__":
    main()
