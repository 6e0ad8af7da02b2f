#!/usr/bin/env bash
# `syncbn compare`'s plotted loss is smoothed in C (steps.csv's smooth_*
# columns: the mean of the last 50 steps), not by gnuplot's bezier, and the
# final train loss of each run is the mean of its last 50 steps: the curve
# ends at it.
# Usage: compare_smoothing.sh SYNCBN
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$1" compare --model seed --ranks 2 --batch 4 --steps 80 --train-samples 512 --out "$out" > "$out/log" 2>&1 ||
  { tail -20 "$out/log"; exit 1; }
/usr/bin/python3 "$here/study_check.py" compare "$out"
