#!/usr/bin/env bash
# Runs every benchmark and prints the tables the README quotes.
# Usage: bench/run.sh [BUILD_DIR]     (make bench builds first)
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
oversubscribe=""
if mpiexec --version 2>&1 | grep -qE "Open MPI|OpenRTE"; then oversubscribe=--oversubscribe; fi

echo "## BN kernels (bench_bn, with PyTorch's times from bench/bn_torch.py when PyTorch is installed)"
torch_times=""
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  torch_times=$(mktemp)
  /usr/bin/python3 bench/bn_torch.py > "$torch_times"
fi
"$build/bench/bench_bn" ${torch_times:+--torch "$torch_times"}

echo
echo "## SyncBN vs plain BN, one layer, training forward+backward (bench_syncbn)"
header=--header
for ranks in 1 2 4; do
  OMP_NUM_THREADS=$(( ranks == 1 ? 2 : 1 )) mpiexec -n "$ranks" $oversubscribe "$build/bench/bench_syncbn" $header
  header=""
done

if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo
  echo "## Training throughput, convnet at B=32 (bench_train vs PyTorch)"
  bash bench/train_throughput.sh "$build" --accuracy
fi

echo
echo "## What checkpointing costs convnet training (bench/checkpoint_cost.sh)"
bash bench/checkpoint_cost.sh "$build"
