#!/usr/bin/env bash
# Training throughput of convnet at B=32, syncbn (BN+ReLU fused, the default,
# and --no-fuse-relu) vs its PyTorch twin, 1 and 2 threads, interleaved in one
# run (3 rounds each, best kept). PyTorch runs with jemalloc preloaded when it
# is installed (PyTorch's CPU guide recommends it; bench/run.sh says why the
# decay settings), else with glibc malloc.
# Then (with --accuracy) both trained for 2 epochs: test accuracy side by side.
# Usage: bench/train_throughput.sh [BUILD_DIR] [--accuracy]
set -euo pipefail
build=${1:-build}
steps=400
best() { sort -g | tail -n 1; }
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
torch_env=()
if [ -e "$jemalloc" ]; then
  torch_env=(env "LD_PRELOAD=$jemalloc" "MALLOC_CONF=${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}")
  echo "PyTorch with jemalloc preloaded ($jemalloc)"
else
  echo "PyTorch with glibc malloc (jemalloc not installed)"
fi
images_per_second() { # syncbn train's ms/step -> images/s
  "$build/syncbn" train --steps $steps --threads "$1" --metrics /dev/null "${@:2}" |
    sed -n 's/.* \([0-9.]*\) ms\/step.*/\1/p' | awk '{ printf "%.0f\n", 32000 / $1 }'
}
echo
echo "| threads | syncbn images/s (fused BN+ReLU) | syncbn, --no-fuse-relu | fused/separate | PyTorch images/s | syncbn/PyTorch |"
echo "|---|---|---|---|---|---|"
for threads in 1 2; do
  fused="" separate="" theirs=""
  for round in 1 2 3; do
    fused+="$(images_per_second $threads)"$'\n'
    separate+="$(images_per_second $threads --no-fuse-relu)"$'\n'
    theirs+="$("${torch_env[@]}" /usr/bin/python3 bench/pytorch_twin.py --steps $steps --threads $threads |
               sed -n 's/.*"images_per_second": \([0-9.]*\).*/\1/p')"$'\n'
  done
  f=$(echo -n "$fused" | best) s=$(echo -n "$separate" | best) t=$(echo -n "$theirs" | best)
  awk -v t="$threads" -v f="$f" -v s="$s" -v p="$t" \
    'BEGIN { printf "| %d | %.0f | %.0f | %.2f | %.0f | %.2f |\n", t, f, s, f / s, p, f / p }'
done
if [ "${2:-}" = "--accuracy" ]; then
  echo
  echo "2 epochs, convnet with BN, B=32, lr 0.01, momentum 0.9, weight decay 5e-4, 2 threads:"
  "$build/syncbn" train --epochs 2 --threads 2 | sed 's/^/syncbn:  /'
  /usr/bin/python3 bench/pytorch_twin.py --epochs 2 --threads 2 | sed 's/^/pytorch: /'
fi
