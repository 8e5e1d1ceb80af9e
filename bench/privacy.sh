#!/usr/bin/env bash
# Every privacy method side by side on RAVDESS + nEMO, operating points chosen on
# validation speakers, then scored on the test speakers of 5 folds by all attackers.
#
#     bench/privacy.sh [WORKDIR]
#
# WORKDIR (default runs/privacy) is prepared with per-user normalisation if it is
# not already; finished baselines, cloaks and attackers found there are reused, so
# an interrupted run resumes. Each method is one `sercloak experiment` call
# (options below) with --select-on-valid: every setting (SR 0 and 60 for cloaks)
# is scored on the primary pool's validation speakers of the folds in SELECT
# (default fold 0 only: a trim for time), each method's operating point is
# chosen there, and only it runs on test speakers (FOLDS, default 0-4).
# Prints one line per method (bench/privacy_lines.py) and, last, one key=value
# line with the best method and the wall time. Seed 0 throughout; figures move
# a little with the thread count and the machine. On this 2-core machine the
# whole comparison took 116 minutes (docs/privacy.md); finished runs are reused.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
corpora="$here/../shared/corpora"
python="${PYTHON:-$here/.venv/bin/python}"
[ -d "$corpora/ravdess" ] && [ -d "$corpora/nemo" ] || { echo "needs RAVDESS and nEMO in $corpora" >&2; exit 1; }
work="${1:-runs/privacy}"
folds="${FOLDS:-0-4}"
select="${SELECT:-0}"

start=$(date +%s)
"$python" -m sercloak prepare --workdir "$work" --normalise user \
    --corpus "ravdess=$corpora/ravdess" --corpus "nemo=$corpora/nemo" --quiet
run() {
    local t0=$(date +%s)
    "$python" -m sercloak experiment --workdir "$work" --folds "$folds" \
        --select-on-valid "$select" --ratios 0,60 --quiet "$@" > "$work/last-run.log"
    echo "sercloak experiment $* ($(( $(date +%s) - t0 )) s)"
}
run                                                        # cloak, cloak_adversarial: the paper's
run --transform mcadams                                    # 6: VoicePrivacy B2
run --transform pitch_shift                                # 6: pitch/formant shift
run --cloak-kind temporal                                  # 1: noise that does not average out
run --cloak-kind temporal --variants adversarial --game minmax --adversaries cnn,stats \
    --adversary-steps 2 --adversary-lr 1e-3 --weight-warmup 0.5   # 4: real min–max
run --cloak-kind temporal --variants plain --adapt-epochs 3       # 5: server-side adaptation
run --warp 0.2 --variants plain                            # 2: random warping (+ f_θ with VTLP)
run --mask-by saliency --variants plain                    # 3: mask by gender saliency
run --cloak-kind temporal --variants adversarial --game minmax --adversaries cnn,stats \
    --adversary-steps 2 --adversary-lr 1e-3 --weight-warmup 0.5 --adapt-epochs 3  # 4 + 5
run --transform mcadams --adapt-epochs 3                   # 6 + 5: a service adapted to McAdams
wall=$(( $(date +%s) - start ))
"$python" "$here/bench/privacy_lines.py" "$work/results.json" --wall "$wall"
