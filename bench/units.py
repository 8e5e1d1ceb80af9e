"""What the units of work logged in a workdir cost: unit-hours, by kind and by phase.

    python bench/units.py WORKDIR/PROTOCOL/units.jsonl [--workers 2]

Every `sercloak experiment` run appends one line per unit it ran to its
protocol's units.jsonl (`layout.Layout.unit_log`), under either executor, so
the figures add up over interrupted and resumed runs: e.g. the whole
comparison of `bench/privacy.sh` in unit-hours, however many sessions it
took. Seconds are each unit's own wall time with the threads it had (2 torch
threads under the local executor here, `--ray-cpus-per-unit` under Ray).
Then per method (all its phases: choosing on validation and scoring on
test): its unit-hours and the wall time they make on `--workers` workers
that are never idle (a lower bound: a method's last units may run alone).
Last line: key=value figures.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from sercloak.experiment.executors import read_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="workers for the wall time")
    args = parser.parse_args()
    if not args.log.is_file():
        parser.error(f"{args.log}: no such unit log (a `sercloak experiment` run writes "
                     "WORKDIR/PROTOCOL/units.jsonl once it has run a unit)")
    units = read_log(args.log)
    done = [u for u in units if u["status"] == "done"]
    by_kind, by_phase, by_method = defaultdict(float), defaultdict(float), defaultdict(float)
    for u in done:
        by_kind[u["name"].split("/")[0]] += u["seconds"]
        by_phase[u["phase"]] += u["seconds"]
        by_method[u["phase"].split(" on ")[0]] += u["seconds"]  # "METHOD on PART"
    for phase, seconds in sorted(by_phase.items(), key=lambda kv: -kv[1]):
        print(f"{phase}: {seconds / 3600:.2f} unit-hours")
    for method, seconds in by_method.items():
        print(f"method {method}: {seconds / 3600:.2f} unit-hours, at least "
              f"{seconds / 60 / args.workers:.0f} min on {args.workers} workers")
    total = sum(u["seconds"] for u in done)
    print(" ".join([f"units={len(done)}", f"failed={len(units) - len(done)}",
                    f"unit_hours={total / 3600:.2f}",
                    *(f"{kind}_hours={s / 3600:.2f}" for kind, s in sorted(by_kind.items()))]))


if __name__ == "__main__":
    main()
