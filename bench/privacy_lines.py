"""The lines of bench/privacy.sh from a results.json: one per method, then a summary.

    python bench/privacy_lines.py WORKDIR/results.json [--wall SECONDS]

Per method chosen on validation speakers (entries with a `validation` part):
its test figures, 5-fold means. Emotion drop is against the clean emotion
model on the same test speakers. Last line: the method with the lowest
worst-case gender UAR among those within 2 points of clean emotion (`none`
if none is), the method closest to issue 10's target (the fewest points
missing from gender <= 65 and drop <= 2, added up), and whether any met it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET_GENDER, TARGET_DROP = 65.0, 2.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--wall", type=float, help="wall time of the whole comparison (s)")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    clean = results["baseline"]["emotion"]["uar"]["mean"]
    worst_clean = results["baseline"]["gender_worst"]["uar"]["mean"]
    print(f"method=clean emotion_uar={clean:.2f} emotion_drop=0.00 "
          f"worst_gender_uar={worst_clean:.2f} "
          f"worst_attacker={results['baseline']['gender_worst']['attacker']} "
          f"speaker_eer={results['baseline'].get('speaker_eer', {}).get('mean', float('nan'))}")
    rows = []
    for e in results["cloak"]:
        if "validation" not in e:
            continue
        emotion, worst = e["emotion"]["uar"]["mean"], e["gender_worst"]["uar"]["mean"]
        rows.append((e["method"], clean - emotion, worst))
        print(f"method={e['method']} setting=SR{e['suppression_ratio']:g} "
              f"emotion_uar={emotion:.2f} emotion_drop={clean - emotion:.2f} "
              f"worst_gender_uar={worst:.2f} worst_attacker={e['gender_worst']['attacker']} "
              f"speaker_eer={e.get('speaker_eer', {}).get('mean', float('nan'))}")
    if not rows:
        raise SystemExit(f"{args.results}: no operating points chosen on validation speakers")
    within = [r for r in rows if r[1] <= TARGET_DROP]
    best = min(within, key=lambda r: r[2])[0] if within else "none"
    # the closest to the target: the least points missing, emotion and gender added up
    closest = min(rows, key=lambda r: max(0, r[1] - TARGET_DROP) + max(0, r[2] - TARGET_GENDER))
    met = any(r[1] <= TARGET_DROP and r[2] <= TARGET_GENDER for r in rows)
    print(f"methods={len(rows)} best_within_2_points={best} closest_method={closest[0]} "
          f"closest_emotion_drop={closest[1]:.2f} closest_worst_gender_uar={closest[2]:.2f} "
          f"target_met={str(met).lower()} wall_s={args.wall if args.wall is not None else 'nan'}")


if __name__ == "__main__":
    main()
