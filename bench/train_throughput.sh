#!/usr/bin/env bash
# Training throughput of convnet at B=32, syncbn vs its PyTorch twin, 1 and 2
# threads, interleaved in one run (3 rounds each, best kept).
# Then (with --accuracy) both trained for 2 epochs: test accuracy side by side.
# Usage: bench/train_throughput.sh [BUILD_DIR] [--accuracy]
set -euo pipefail
build=${1:-build}
steps=400
best() { sort -g | tail -n 1; }
echo "| threads | syncbn images/s | PyTorch images/s | syncbn/PyTorch |"
echo "|---|---|---|---|"
for threads in 1 2; do
  ours="" theirs=""
  for round in 1 2 3; do
    ms=$("$build/syncbn" train --steps $steps --threads $threads --metrics /dev/null |
         sed -n 's/.* \([0-9.]*\) ms\/step.*/\1/p')
    ours+="$(awk -v ms="$ms" 'BEGIN { printf "%.0f\n", 32000 / ms }')"$'\n'
    theirs+="$(/usr/bin/python3 bench/pytorch_twin.py --steps $steps --threads $threads |
               sed -n 's/.*"images_per_second": \([0-9.]*\).*/\1/p')"$'\n'
  done
  o=$(echo -n "$ours" | best) t=$(echo -n "$theirs" | best)
  awk -v t="$threads" -v o="$o" -v p="$t" 'BEGIN { printf "| %d | %.0f | %.0f | %.2f |\n", t, o, p, o / p }'
done
if [ "${2:-}" = "--accuracy" ]; then
  echo
  echo "2 epochs, convnet with BN, B=32, lr 0.01, momentum 0.9, weight decay 5e-4, 2 threads:"
  "$build/syncbn" train --epochs 2 --threads 2 | sed 's/^/syncbn:  /'
  /usr/bin/python3 bench/pytorch_twin.py --epochs 2 --threads 2 | sed 's/^/pytorch: /'
fi
