#!/usr/bin/env bash
# A short real `syncbn compare` (mpiexec, 4 ranks x 8, 12 steps) and the
# checks of test_compare_summary on its summary.json.
# Usage: compare_check.sh SYNCBN CHECKER
set -euo pipefail
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$1" compare --ranks 4 --batch 32 --steps 12 --train-samples 4096 --no-plot --out "$out"
"$2" "$out/summary.json"
