#!/usr/bin/env bash
# `make demo`: the BN vs SyncBN experiment on Fashion-MNIST (a few minutes on 2 cores).
# Usage: scripts/demo.sh [BUILD_DIR] [extra `syncbn compare` options]
set -euo pipefail
build=${1:-build}
shift || true
out=${SYNCBN_DEMO_OUT:-out/demo}
echo "== syncbn compare: 1 process vs 4 ranks with BN vs 4 ranks with SyncBN (convnet, B=32, 1 epoch) =="
"$build/syncbn" compare --ranks 4 --batch 32 --epochs 1 --out "$out" "$@"
echo
echo "Results in $out: summary.json, steps.csv, run_{a,b,c}.jsonl and the plot compare.png"
echo "When does SyncBN matter? Per-rank batches x seeds with significance tests: $build/syncbn study --quick"
