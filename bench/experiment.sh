#!/usr/bin/env bash
# The privacy–utility grid on RAVDESS + nEMO: `prepare` + `experiment` over 5 folds, timed.
#
#     bench/experiment.sh [WORKDIR] [extra `sercloak experiment` options...]
#
# Runs the real commands on ../shared/corpora in WORKDIR (default: a fresh
# temporary folder; finished baselines, cloaks and attackers found there are
# reused), prints the Table-2-shaped baselines, the privacy–utility table with
# every attacker and the wall time. Last line: key=value figures: the clean
# models, and at SR = 60% with adversarial training the emotion UAR, the
# paper's ignorant and informed cnn attackers, the worst case over all
# attackers (and which), and the speaker EER. Extra options go to
# `sercloak experiment` (e.g. --attacker-pool all). NORMALISE=none prepares dB features
# instead of the default per-user normalisation.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
corpora="$here/../shared/corpora"
python="${PYTHON:-$here/.venv/bin/python}"
[ -d "$corpora/ravdess" ] && [ -d "$corpora/nemo" ] || { echo "needs RAVDESS and nEMO in $corpora" >&2; exit 1; }
work="${1:-$(mktemp -d -t sercloak-experiment-XXXX)}"
shift || true

start=$(date +%s)
"$python" -m sercloak prepare --workdir "$work" --normalise "${NORMALISE:-user}" \
    --corpus "ravdess=$corpora/ravdess" --corpus "nemo=$corpora/nemo"
"$python" -m sercloak experiment --workdir "$work" --folds 0-4 "$@"
wall=$(( $(date +%s) - start ))

results="$work/results.json"
case " $* " in *" --attacker-pool all "*) results="$work/results-pool-all.json" ;; esac
"$python" - "$results" "$wall" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
adv60 = next(e for e in r["cloak"] if e["adversarial"] and e["suppression_ratio"] == 60)
clean = r["baseline"]["emotion"]["uar"]["mean"]
figures = {
    "emotion_uar_clean": clean,
    "gender_uar_clean": r["baseline"]["gender"]["uar"]["mean"],
    "emotion_uar_adv_sr60": adv60["emotion"]["uar"]["mean"],
    "emotion_drop_adv_sr60": round(clean - adv60["emotion"]["uar"]["mean"], 2),
    "gender_ignorant_uar_adv_sr60": adv60["gender_ignorant"]["uar"]["mean"],
    "gender_informed_uar_adv_sr60": adv60["gender_informed"]["uar"]["mean"],
    "worst_gender_uar_clean": r["baseline"]["gender_worst"]["uar"]["mean"],
    "worst_gender_uar_adv_sr60": adv60["gender_worst"]["uar"]["mean"],
    "worst_attacker_adv_sr60": adv60["gender_worst"]["attacker"],
    "speaker_eer_clean": r["baseline"].get("speaker_eer", {}).get("mean"),
    "speaker_eer_adv_sr60": adv60.get("speaker_eer", {}).get("mean"),
    "experiment_s": r["wall_time_s"],
    "wall_s": int(sys.argv[2]),
}
print(" ".join(f"{k}={v}" for k, v in figures.items()))
EOF
