#!/usr/bin/env bash
# A tiny real `syncbn study` under mpiexec (seed model, 60 steps per run,
# 2 ranks, per-rank batches 1 and 2, lr stress x3, 2 seeds: 18 runs): every
# output file exists with the expected structure, the cells summarize their
# runs, the final train loss is the mean of the last 50 steps, and a study
# that is already complete runs nothing and rewrites the same report.
# Usage: study_outputs.sh SYNCBN
set -euo pipefail
syncbn=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(study --model seed --batches 2,1 --ranks 2 --seeds 2 --lr-stress 3 --steps 60 --train-samples 256
      --eval-points 2 --loss-threshold 2 --accuracy-level 0.3 --out "$out/study")
"$syncbn" "${args[@]}" > "$out/log" 2>&1 || { tail -20 "$out/log"; exit 1; }
/usr/bin/python3 "$here/study_check.py" study "$out/study" "$out/log" 18 9
cp "$out/study/study.csv" "$out/first.csv"
"$syncbn" "${args[@]}" > "$out/log2" 2>&1 || { tail -20 "$out/log2"; exit 1; }
grep -q "18 recorded in .* (skipped), 0 to run" "$out/log2" || { echo "FAIL: the complete study ran again"; head -3 "$out/log2"; exit 1; }
if grep -q '^\[' "$out/log2"; then echo "FAIL: a recorded run ran again"; exit 1; fi
cmp "$out/first.csv" "$out/study/study.csv" || { echo "FAIL: the same records gave another study.csv"; exit 1; }
echo "ok: a complete study reruns nothing and reports the same"
