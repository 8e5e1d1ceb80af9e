"""A small real grid under both executors: one process, and Ray tasks.

    python bench/grid.py [--workdir DIR] [--prepared DIR] [--folds 0,1] [--epochs 4]
                         [--attackers cnn,stats]

RAVDESS + nEMO (../shared/corpora) prepared once in DIR/prepared (per-user
normalisation; or `--prepared`, any such workdir, whose features are linked),
then the same experiment run twice from scratch, under the shared protocol:
clean models of `--folds`, and the temporal cloak (plain, SR 0 and 60, the
service adapted) chosen on the validation speakers of those folds and scored
on their test speakers by the `--attackers`. First with the local executor
(one process, 2 torch threads), then with Ray (2 tasks at once, 1 thread
each) on a local Ray of 2 CPUs. Clean models train `--epochs` epochs (the
recipe's 12 would triple the time without changing what is measured: the
executors' overhead and speed-up).

From the units' measured costs under Ray (one thread each) it computes the
critical path and the wall time expected on 8, 32 and 128 one-CPU workers
(`executors.expected_wall`: a list schedule, phase by phase). Last line:
key=value figures. Needs the [ray] extra. Wall times move with the machine
and whatever else runs on it.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from sercloak.attacks.suite import FAMILIES, AttackConfig
from sercloak.cloak import CloakConfig
from sercloak.data import Workdir
from sercloak.experiment import ExperimentConfig, run_experiment
from sercloak.experiment.executors import LocalExecutor, RayExecutor, expected_wall
from sercloak.features import FeatureConfig
from sercloak.layout import Layout
from sercloak.prepare import prepare
from sercloak.train import recipe_config

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
PREPARED = ("manifest.csv", "folds.json", "summary.json", "summary.md")


def prepared(source: Path) -> Path:
    """RAVDESS + nEMO prepared once in `source` (per-user normalisation)."""
    if not Layout(source).summary.is_file():
        prepare({"ravdess": CORPORA / "ravdess", "nemo": CORPORA / "nemo"}, source,
                cfg=FeatureConfig(normalise="user"))
    return source


def fresh_copy(source: Path, target: Path) -> Workdir:
    """A workdir with `source`'s prepared files and its features (linked, read only)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in PREPARED:
        shutil.copy(source / name, target / name)
    (target / "features").symlink_to((source / "features").resolve())
    return Workdir.open(target)


def timed(wd: Workdir, folds: list[int], args, executor) -> tuple[float, dict]:
    configs = {t: recipe_config("strong", t, max_epochs=args.epochs)
               for t in ("emotion", "gender")}
    cfg = ExperimentConfig(cloak=CloakConfig(kind="temporal"), variants=("plain",),
                           ratios=(0, 60), adapt_epochs=3, protocol="shared",
                           attacks=AttackConfig(families=tuple(args.attackers.split(","))),
                           select=True)
    started = time.perf_counter()
    results = run_experiment(wd, folds, configs, cfg, show_progress=True, executor=executor)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/grid-bench"))
    parser.add_argument("--prepared", type=Path,
                        help="a workdir prepared from RAVDESS + nEMO with --normalise user "
                             "(default: WORKDIR/prepared, prepared when missing)")
    parser.add_argument("--folds", default="0,1")
    parser.add_argument("--epochs", type=int, default=4, help="clean models' epochs")
    parser.add_argument("--attackers", default="cnn,stats",
                        help=f"attacker families (known: {','.join(FAMILIES)})")
    args = parser.parse_args()
    import ray

    folds = [int(f) for f in args.folds.split(",")]
    source = prepared(args.prepared or args.workdir / "prepared")

    torch.set_num_threads(2)
    local = LocalExecutor()
    local_s, local_results = timed(fresh_copy(source, args.workdir / "local"), folds, args,
                                   local)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    distributed = RayExecutor(cpus_per_unit=1, storage=args.workdir / "ray")
    ray_s, ray_results = timed(fresh_copy(source, args.workdir / "ray"), folds, args,
                               distributed)
    ray.shutdown()

    ran = [r for r in distributed.records if r.status == "done"]
    unit_s = sum(r.seconds for r in ran)
    kinds = {}
    for r in ran:
        kind = r.name.split("/")[0]
        kinds[kind] = kinds.get(kind, 0.0) + r.seconds
    chosen = {e["method"]: e["settings"] for e in ray_results["cloak"]}
    same = {e["method"]: e["settings"] for e in local_results["cloak"]} == chosen
    print("unit seconds by kind (Ray, 1 thread each): "
          + ", ".join(f"{k} {v:.0f}" for k, v in kinds.items()))
    figures = {
        "units": len(ran), "local_wall_s": round(local_s, 1), "ray_wall_s": round(ray_s, 1),
        "ray_over_local": round(ray_s / local_s, 3), "unit_s": round(unit_s, 1),
        "critical_path_s": round(expected_wall(ran, len(ran)), 1),
        **{f"expected_wall_{w}_s": round(expected_wall(ran, w), 1) for w in (2, 8, 32, 128)},
        "same_choice": same, "folds": args.folds, "epochs": args.epochs,
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
