"""Two runs of one comparison, figure by figure: did a change to how it is computed (caching,
batching) move what it measures?

    python bench/compare_results.py BEFORE/results.json AFTER/results.json

Per method both runs hold: the privacy figure (the attacker chosen on validation) and the
paired emotion drop, before and after, their difference and the larger of the two runs'
spreads across seeds; a difference within twice that spread is seed noise ("within").
With one seed there is no spread across seeds, and the std over folds stands in for it.
Last line: key=value figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sercloak.results import read_results

FIGURES = {"privacy": lambda e: e["gender_privacy"]["uar_speaker"],
           "drop": lambda e: e["emotion_drop"]}


def spread(stat: dict) -> float:
    return stat.get("seed_std", stat["std"])


def entries(results: dict) -> dict[str, dict]:
    """Each entry by its method when its points were chosen on validation (one entry per
    method, whatever it chose), else by method and setting (a grid's)."""
    return {e["method"] if "validation" in e else f"{e['method']}:{e['setting']}": e
            for e in results["cloak"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = (entries(read_results(f)) for f in (args.before, args.after))
    shared = [m for m in before if m in after]
    within = 0
    for method in shared:
        cells, ok = [f"method={method}"], True
        for name, get in FIGURES.items():
            b, a = get(before[method]), get(after[method])
            noise = 2 * max(spread(b), spread(a))
            ok &= abs(a["mean"] - b["mean"]) <= noise
            cells += [f"{name}_before={b['mean']:.2f}", f"{name}_after={a['mean']:.2f}",
                      f"{name}_diff={a['mean'] - b['mean']:+.2f}", f"{name}_noise={noise:.2f}"]
        within += ok
        print(" ".join([*cells, f"within={'yes' if ok else 'no'}"]))
    print(f"methods={len(shared)} within={within} only_before={len(before) - len(shared)} "
          f"only_after={len(after) - len(shared)}")


if __name__ == "__main__":
    main()
