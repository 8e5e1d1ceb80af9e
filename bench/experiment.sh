#!/usr/bin/env bash
# The privacy–utility grid on RAVDESS + nEMO: `prepare` + `experiment` over 5 folds, timed.
#
#     bench/experiment.sh [WORKDIR] [extra `sercloak experiment` options...]
#
# Runs the real commands on ../shared/corpora in WORKDIR (default: a fresh
# temporary folder; finished baselines, cloaks and attackers found there are
# reused), prints the Table-2-shaped baselines, the privacy–utility table with
# every attacker and the wall time. Last line: key=value figures (speaker-
# balanced UAR): the clean models, and at SR = 60% with adversarial training the
# emotion UAR and its paired drop with its 95% interval, the
# paper's ignorant and informed cnn attackers, the privacy figure (the
# attacker chosen on validation, and which), and the speaker EER. Extra options go to
# `sercloak experiment` (e.g. --seeds 0,1,2). PROTOCOL=shared trains everything on
# every non-test speaker (default: paper); NORMALISE=none prepares dB features
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
protocol="${PROTOCOL:-paper}"
"$python" -m sercloak experiment --workdir "$work" --folds 0-4 --protocol "$protocol" "$@"
wall=$(( $(date +%s) - start ))

"$python" - "$work" "$protocol" "$wall" <<'EOF'
import sys
from sercloak.layout import Layout
from sercloak.results import comparison_file, read_results
r = read_results(comparison_file(Layout(sys.argv[1]), sys.argv[2]))
adv60 = next(e for e in r["cloak"] if e["method"] == "cloak_adversarial"
             and e["points"][0]["suppression_ratio"] == 60)
figures = {
    "emotion_uar_clean": r["baseline"]["emotion"]["uar_speaker"]["mean"],
    "gender_uar_clean": r["baseline"]["gender"]["uar_speaker"]["mean"],
    "emotion_uar_adv_sr60": adv60["emotion"]["uar_speaker"]["mean"],
    "emotion_drop_adv_sr60": adv60["emotion_drop"]["mean"],
    "emotion_drop_adv_sr60_ci95": "..".join(map(str, adv60["emotion_drop"]["ci95"])),
    "gender_ignorant_uar_adv_sr60": adv60["gender_ignorant"]["uar_speaker"]["mean"],
    "gender_informed_uar_adv_sr60": adv60["gender_informed"]["uar_speaker"]["mean"],
    "worst_gender_uar_clean": r["baseline"]["gender_privacy"]["uar_speaker"]["mean"],
    "worst_gender_uar_adv_sr60": adv60["gender_privacy"]["uar_speaker"]["mean"],
    "worst_attacker_adv_sr60": adv60["gender_privacy"]["attacker"],
    "speaker_eer_clean": r["baseline"].get("speaker_eer", {}).get("mean"),
    "speaker_eer_adv_sr60": adv60.get("speaker_eer", {}).get("mean"),
    "experiment_s": r["wall_time_s"],
    "wall_s": int(sys.argv[3]),
}
print(" ".join(f"{k}={v}" for k, v in figures.items()))
EOF
