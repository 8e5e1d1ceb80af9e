#!/usr/bin/env bash
# The README's first command as a new user meets it: a fresh clone, the install, the demo.
#
#     bench/first_run.sh [RUNS]
#
# RUNS times (default 3): clone this checkout's HEAD into a new temporary folder, run the
# README's first command there (its two halves timed apart: the install, then
# `sercloak demo`), and read the demo's own `wall time` line. Run it with nothing else on
# the machine: the figures are wall-clock seconds. pip's cache is left as it is (a new
# user's is empty: their install takes longer). Last line: key=value figures, medians.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-3}"
commit=$(git -C "$here" rev-parse --short HEAD)
firsts=() installs=() demos=() walls=()
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
for run in $(seq "$runs"); do
    clone=$(mktemp -d -t sercloak-first-run-XXXX)
    git clone --quiet "$here" "$clone/sercloak"
    cd "$clone/sercloak"
    t0=$(date +%s.%N)
    python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . > /dev/null
    t1=$(date +%s.%N)
    .venv/bin/sercloak demo > demo.log 2>&1
    t2=$(date +%s.%N)
    wall=$(sed -n 's/^wall time \([0-9.]*\) s.*/\1/p' demo.log)
    installs+=("$(seconds "$t0" "$t1")") demos+=("$(seconds "$t1" "$t2")")
    firsts+=("$(seconds "$t0" "$t2")") walls+=("$wall")
    echo "run $run at $commit: install ${installs[-1]} s, demo ${demos[-1]} s (its wall" \
         "time line: $wall s), the first command ${firsts[-1]} s"
    cd "$here" && rm -rf "$clone"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "commit=$commit runs=$runs first_command_s=$(median "${firsts[@]}")" \
     "install_s=$(median "${installs[@]}") demo_s=$(median "${demos[@]}")" \
     "demo_wall_time_s=$(median "${walls[@]}")"
