"""The lines of bench/privacy.sh from a results.json: one per method, then a summary.

    python bench/privacy_lines.py RESULTS [--wall SECONDS] [--markdown]

RESULTS: a comparison's results.json (WORKDIR/PROTOCOL/folds<F>-seeds<S>/results.json).

Per method whose operating points were chosen on each fold's validation
speakers (entries with a `validation` part), its test figures, means over
seeds and folds, speaker-balanced:

- `worst_gender_uar`: the privacy figure, the gender UAR of the attacker
  chosen on its own validation speakers (per seed and fold), with `_ci95`
  (stratified speaker bootstrap), `chance_mean` and `chance_95` (the
  permutation null of the same statistic: the test speakers' genders shuffled
  within each fold) and `p_vs_chance`; `chance=yes` when it cannot be told
  from chance (p >= 0.05);
- `upper_bound`: the best attacker on the test speakers, chosen with their
  labels (an upper bound, not a figure an attacker reaches); `below_upper_bound`,
  the figure's distance below it, and `chosen_best_share`, the share of seeds and
  folds whose chosen attacker was the best on test (what the choice gives up);
- `user_level_20`: the chosen attacker pooling 20 utterances of each test
  user into one guess (balanced accuracy over users), with its interval;
- `emotion_drop` and its `_ci95` (paired: the clean emotion model minus the
  method on the same utterances), the validation drop of the chosen points
  beside it, and `seeds`;
- with several seeds, the spread across them: `worst_gender_uar_seeds` and
  `emotion_drop_seeds` (each seed's mean over folds) and their `_seed_std`.

With `--markdown`, the same figures as the README's headline table instead.

Last line: the floor (`posteriors`: what the emotion output alone leaks),
the best deployable design (one a bundle ships: `serving.export.exportable`)
within 1 point of emotion, and whether it meets the target (its privacy
figure <= 60% or indistinguishable from chance, its user-level figure after
20 requests <= 70%), the widest emotion-drop interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sercloak.methods import FLOOR
from sercloak.report.format import (
    fmt_chance,
    fmt_ci,
    fmt_privacy,
    fmt_seeds,
    method_label,
    point_words,
    privacy,
)
from sercloak.results import read_results
from sercloak.serving.export import exportable
from sercloak.targets import (
    DEPLOYABLE_DROP,
    DEPLOYABLE_GENDER,
    DEPLOYABLE_USER_LEVEL,
    USER_LEVEL_REQUESTS,
)


def interval(stat: dict) -> str:
    lo, hi = stat["ci95"]
    return f"{lo:.2f}..{hi:.2f}"


USER = f"user_level_{USER_LEVEL_REQUESTS}"


def seed_fields(name: str, stat: dict) -> str:
    """`NAME_seeds` (each seed's mean over folds) and `NAME_seed_std`, with several seeds."""
    if "seeds" not in stat:
        return ""
    return (f" {name}_seeds={','.join(f'{v:.2f}' for v in stat['seeds'])} "
            f"{name}_seed_std={stat['seed_std']:.2f}")


def privacy_fields(entry: dict) -> str:
    figures = entry["gender_privacy"]
    figure, users = figures["uar_speaker"], figures["user_level"][str(USER_LEVEL_REQUESTS)]
    upper = figures["upper_bound"]
    return (f"worst_gender_uar={figure['mean']:.2f} worst_gender_uar_ci95={interval(figure)} "
            f"chance_mean={figure['chance']['mean']:.2f} chance_95={figure['chance']['p95']:.2f} "
            f"p_vs_chance={figure['chance']['p']:.4f}{seed_fields('worst_gender_uar', figure)} "
            f"chance={'yes' if figure['indistinguishable_from_chance'] else 'no'} "
            f"upper_bound={upper['uar_speaker']['mean']:.2f} "
            f"upper_bound_ci95={interval(upper['uar_speaker'])} "
            f"below_upper_bound={upper['uar_speaker']['mean'] - figure['mean']:.2f} "
            f"chosen_best_share={upper['chosen_best_share']:.2f} "
            f"{USER}={users['mean']:.2f} {USER}_ci95={interval(users)} "
            f"{USER}_p={users['chance']['p']:.4f} "
            f"chosen_attacker={figures['attacker']}")


def eer_fields(entry: dict) -> str:
    nan = {"mean": float("nan")}
    return (f"speaker_eer={entry.get('speaker_eer', nan)['mean']} "
            f"speaker_eer_retrained={entry.get('speaker_eer_retrained', nan)['mean']}")


def markdown(results: dict) -> None:
    """The README's headline table: the clean reference, then each method chosen on
    validation speakers, in the report's formats."""
    several = len(results["config"]["seeds"]) > 1
    print("| design | point | emotion UAR | emotion drop [95% CI] | gender UAR, attacker chosen "
          "on validation [95% CI] | chance: mean / 95th pct., p | upper bound [95% CI] | "
          f"user level, {USER_LEVEL_REQUESTS} requests [95% CI] |"
          + (" per seed: gender UAR; emotion drop |" if several else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if several else ""))
    rows = [("clean", "–", "0", {**results["baseline"], "emotion_drop": {}})] + [
        (method_label(e), point_words(e), fmt_ci(e["emotion_drop"]), e)
        for e in results["cloak"] if "validation" in e]
    for name, point, drop, e in rows:
        figures = e["gender_privacy"]
        print(f"| {name} | {point} | {e['emotion']['uar_speaker']['mean']:.1f} | {drop} | "
              f"{fmt_privacy(privacy(e))} | {fmt_chance(privacy(e))} | "
              f"{fmt_ci(figures['upper_bound']['uar_speaker'])} | "
              f"{fmt_ci(figures['user_level'][str(USER_LEVEL_REQUESTS)])} |"
              + (f" {fmt_seeds(privacy(e))}; {fmt_seeds(e['emotion_drop'])} |"
                 if several else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--wall", type=float, help="wall time of the whole comparison (s)")
    parser.add_argument("--markdown", action="store_true", help="the README's table")
    args = parser.parse_args()
    results = read_results(args.results)
    if args.markdown:
        markdown(results)
        return
    base = results["baseline"]
    seeds = ",".join(map(str, results["config"]["seeds"]))
    print(f"method=clean emotion_uar={base['emotion']['uar_speaker']['mean']:.2f} "
          f"emotion_uar_ci95={interval(base['emotion']['uar_speaker'])} emotion_drop=0.00 "
          f"{privacy_fields(base)} {eer_fields(base)} seeds={seeds}")
    rows = []
    for e in results["cloak"]:
        if "validation" not in e:
            continue
        drop, figure = e["emotion_drop"], e["gender_privacy"]["uar_speaker"]
        half_width = (drop["ci95"][1] - drop["ci95"][0]) / 2
        user_level = e["gender_privacy"]["user_level"][str(USER_LEVEL_REQUESTS)]["mean"]
        rows.append((e["method"], drop["mean"], figure, half_width,
                     exportable(e["spec"]), user_level))
        print(f"method={e['method']} setting={e['setting']} "
              f"emotion_uar={e['emotion']['uar_speaker']['mean']:.2f} "
              f"emotion_drop={drop['mean']:.2f} emotion_drop_ci95={interval(drop)}"
              f"{seed_fields('emotion_drop', drop)} "
              f"valid_emotion_drop={e['validation']['emotion_drop']['mean']:.2f} "
              f"{privacy_fields(e)} {eer_fields(e)} seeds={seeds}")
    if not rows:
        raise SystemExit(f"{args.results}: no operating points chosen on validation speakers")
    widest = max(rows, key=lambda r: r[3])
    floor = next((r for r in rows if r[0] == FLOOR.name), None)
    deployable = [r for r in rows if r[4] and r[1] <= DEPLOYABLE_DROP]
    best = min(deployable, key=lambda r: r[2]["mean"]) if deployable else None
    met = best is not None and (best[2]["mean"] <= DEPLOYABLE_GENDER
                                or best[2]["indistinguishable_from_chance"]) \
        and best[5] <= DEPLOYABLE_USER_LEVEL
    floor_figure = f"{floor[2]['mean']:.2f}" if floor else "nan"
    best_figure = f"{best[2]['mean']:.2f}" if best else "nan"
    print(f"methods={len(rows)} floor_worst_gender_uar={floor_figure} "
          f"best_within_1_point={best[0] if best else 'none'} "
          f"best_within_1_point_worst_gender_uar={best_figure} "
          f"deployable_target_met={str(met).lower()} "
          f"widest_drop_half_width={widest[3]:.2f} widest_method={widest[0]} "
          f"wall_s={args.wall if args.wall is not None else 'nan'}")


if __name__ == "__main__":
    main()
