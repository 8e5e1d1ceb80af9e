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
# is scored on the primary pool's validation speakers of every fold, each fold's
# operating point is chosen on its own, and only it is scored on the fold's test
# speakers (FOLDS, default 0-4) by the attackers that were fitted for the choice.
# The methods' figures go to one comparison, WORKDIR/PROTOCOL/folds<F>-seeds<S>/
# (results.json, report.md, pareto.png): other folds or seeds make another.
#
# Settings (environment): PROTOCOL (default shared: everything trains on every
# non-test speaker; paper: the paper's pools), SEEDS (default 0,1,2), FOLDS,
# METHODS (a comma-separated subset of the names below, all, or headline: the designs
# of the README's headline table; default: `order`),
# EXECUTOR (default local; ray: each method's units as Ray tasks, docs/cluster.md; with
# RAY_ADDRESS for a running cluster). Every unit's cost goes to WORKDIR/PROTOCOL/units.jsonl
# (bench/units.py adds it up, over interrupted runs too).
# Shows each method's progress (its phases' units done / total and the time left from
# the logged costs of the same work on other seeds and folds; the rest goes to
# WORKDIR/logs), prints one line per method (bench/privacy_lines.py: the privacy figure chosen on
# validation with its interval, chance band and p, the upper bound, the user-level
# figure, the emotion drop with its interval, the seeds) and, last, one key=value
# line with the floor, the best deployable design, the widest 95% interval of an
# emotion drop and the wall time. Figures move a little with the thread count and
# the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
corpora="$here/../shared/corpora"
python="${PYTHON:-$here/.venv/bin/python}"
[ -d "$corpora/ravdess" ] && [ -d "$corpora/nemo" ] || { echo "needs RAVDESS and nEMO in $corpora" >&2; exit 1; }
work="${1:-runs/privacy}"
protocol="${PROTOCOL:-shared}"
folds="${FOLDS:-0-4}"
seeds="${SEEDS:-0,1,2}"
executor=(--executor "${EXECUTOR:-local}")
[ -z "${RAY_ADDRESS:-}" ] || executor+=(--ray-address "$RAY_ADDRESS")

minmax="--cloak-kind temporal --variants adversarial --game minmax --adversaries cnn,stats
        --adversary-steps 2 --adversary-lr 1e-3 --weight-warmup 0.5"
# each method by its name in results.json (`methods.Method.name`); NAME:RATIOS runs it at
# those suppression ratios only (default 0,60, each fold choosing its own)
declare -A options=(
    [cloak]="--variants plain"                       # the paper's cloak
    [cloak_adversarial]="--variants adversarial"     # and with adversarial training
    [mcadams]="--transform mcadams"                  # VoicePrivacy B2
    [pitch_shift]="--transform pitch_shift"          # pitch/formant shift
    [cloak_temporal]="--cloak-kind temporal --variants plain"  # noise that does not average out
    [cloak_temporal_minmax]="$minmax"                # a real min–max game
    [cloak_temporal_adapted]="--cloak-kind temporal --variants plain --adapt-epochs 3"
    [cloak_warp]="--warp 0.2 --variants plain"       # random warping (+ f_θ trained with VTLP)
    [cloak_saliency]="--mask-by saliency --variants plain"  # mask by gender saliency
    [cloak_temporal_minmax_adapted]="$minmax --adapt-epochs 3"
    [mcadams_adapted]="--transform mcadams --adapt-epochs 3"
    [posteriors]="--design posteriors"               # the floor: only f_θ's window posteriors
    [posteriors_calibrated]="--design posteriors --output calibrated"  # calibrated per user
    [posteriors_label]="--design posteriors --output label"  # the label alone
    # the split network's game against what attackers read (issue 30), k from 8, 16, 32 as
    # the plain game's (`embedding`), so each compares with it; then k from 4, 8, 16
    [embedding_utterance]="--design embedding --split-game utterance"
    [embedding_gru]="--design embedding --split-game gru"
    [embedding_refresh]="--design embedding --split-game refresh"
    [embedding_attackers]="--design embedding --split-game attackers"
    [embedding_k4-8-16]="--design embedding --dims 4,8,16"
    [embedding_attackers_k4-8-16]="--design embedding --split-game attackers --dims 4,8,16"
    [voicenorm_embedding]="--design embedding --transform voicenorm"
    [voicenorm_embedding_attackers]="--design embedding --transform voicenorm
        --split-game attackers"
    [posteriors_debiased]="--design posteriors --debias 1"  # the floor of a debiased f_θ
    [embedding_attackers_debiased]="--design embedding --split-game attackers --debias 1"
    [embedding]="--design embedding"                 # a split network, k chosen from 8, 16, 32
    [voicenorm]="--transform voicenorm"              # per-user voice normalisation (WORLD)
    [voicenorm_adapted]="--transform voicenorm --adapt-epochs 3"
    [voicenorm_cloak_temporal_adapted]="--transform voicenorm --cloak-after --cloak-kind temporal
        --variants plain --adapt-epochs 3"
    [voicenorm_cloak_temporal_minmax_adapted]="--transform voicenorm --cloak-after $minmax
        --adapt-epochs 3"
)
# the default comparison; `extra` methods were dominated by their adapted versions (or,
# for saliency, chose the plain cloak's point) in the issue 10 comparison: METHODS=all
order="cloak cloak_adversarial pitch_shift mcadams_adapted cloak_temporal_adapted"
order="$order cloak_temporal_minmax_adapted cloak_warp posteriors embedding voicenorm"
order="$order voicenorm_adapted voicenorm_cloak_temporal_adapted"
order="$order voicenorm_cloak_temporal_minmax_adapted"
extra="mcadams cloak_temporal cloak_temporal_minmax cloak_saliency"
# issue 30's designs (METHODS=issue30)
issue30="posteriors_calibrated posteriors_label embedding_utterance embedding_gru"
issue30="$issue30 embedding_refresh embedding_attackers embedding_k4-8-16"
issue30="$issue30 embedding_attackers_k4-8-16 voicenorm_embedding voicenorm_embedding_attackers"
issue30="$issue30 posteriors_debiased embedding_attackers_debiased"
# issue 28's headline designs (with the clean reference every run scores): the paper's
# cloak at SR 0 and with adversarial training at SR 60, as the paper reports them
headline="posteriors embedding cloak:0 cloak_adversarial:60 voicenorm_cloak_temporal_adapted"
methods="${METHODS:-${order// /,}}"
[ "$methods" != all ] || methods="${order// /,},${extra// /,}"
[ "$methods" != headline ] || methods="${headline// /,}"
[ "$methods" != issue30 ] || methods="${issue30// /,}"
for run in ${methods//,/ }; do
    [ -n "${options[${run%%:*}]+set}" ] || {
        echo "unknown method ${run%%:*} (known: $order $extra $issue30, or all, headline," \
             "issue30)" >&2; exit 1; }
done

start=$(date +%s)
"$python" -m sercloak prepare --workdir "$work" --normalise user \
    --corpus "ravdess=$corpora/ravdess" --corpus "nemo=$corpora/nemo" --quiet
mkdir -p "$work/logs"
failed=""
total=$(wc -w <<< "${methods//,/ }")
index=0
for run in ${methods//,/ }; do
    name="${run%%:*}"
    ratios="0,60"
    [ "$run" = "$name" ] || ratios="${run#*:}"
    index=$((index + 1))
    log="$work/logs/privacy-$protocol-$name.log"
    echo "method $index/$total: $name (progress: units done / total and the time left from" \
         "logged unit costs, per phase; everything else in $log)" >&2
    t0=$(date +%s)
    # the executor's bars on the terminal (stderr), the rest in the method's log
    # shellcheck disable=SC2086  # the options are words
    if "$python" -m sercloak experiment --workdir "$work" --protocol "$protocol" \
        --folds "$folds" --seeds "$seeds" --select-on-valid --ratios "$ratios" \
        "${executor[@]}" ${options[$name]} > "$log" 2> >(tee -a "$log" >&2); then
        status="done"
    else  # one method's failure never loses the others: its log says why
        status="FAILED (see $log)"
        failed="$failed $name"
    fi
    echo "$name (ratios $ratios): $status, $(( $(date +%s) - t0 )) s: sercloak experiment" \
         "${options[$name]//$'\n'/ }"
done
wall=$(( $(date +%s) - start ))
results=$("$python" -c 'import sys; from sercloak.cli.options import parse_folds as span
from sercloak.layout import Layout
print(Layout(sys.argv[1]).results(sys.argv[2], span(sys.argv[3]), span(sys.argv[4])))' \
    "$work" "$protocol" "$folds" "$seeds")
"$python" "$here/bench/privacy_lines.py" "$results" --wall "$wall"
[ -z "$failed" ] || { echo "failed methods:$failed" >&2; exit 1; }
