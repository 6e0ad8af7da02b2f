#!/usr/bin/env bash
# Runs every benchmark and prints the tables the README quotes.
# Usage: bench/run.sh [BUILD_DIR]     (make bench builds first)
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
oversubscribe=""
if mpiexec --version 2>&1 | grep -qE "Open MPI|OpenRTE"; then oversubscribe=--oversubscribe; fi

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//' || true)
echo "# syncbn benchmarks on ${cpu_model:-an unknown CPU} ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "## BN kernels (bench_bn, with PyTorch's times from bench/bn_torch.py when PyTorch is installed)"
torch_times=""
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  torch_times=$(mktemp)
  trap 'rm -f "$torch_times"' EXIT
  # PyTorch's CPU performance guide recommends jemalloc: when it is installed
  # (Debian: libjemalloc2) PyTorch runs a second time with it preloaded, and
  # each row takes the faster run. jemalloc's defaults hand freed pages of
  # allocations over 8 MiB back to the kernel at once (oversize arena, decay
  # 0), so every call page-faults its output in afresh (measured: 10x slower
  # than glibc malloc on the (32,64,56,56) rows). Unless MALLOC_CONF is set,
  # jemalloc keeps freed pages mapped here, as glibc's heap does.
  /usr/bin/python3 bench/bn_torch.py > "$torch_times"
  jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
  if [ -e "$jemalloc" ]; then
    echo "PyTorch timed twice, with glibc malloc and with jemalloc preloaded (LD_PRELOAD=$jemalloc); each row takes the faster"
    LD_PRELOAD="$jemalloc${LD_PRELOAD:+:$LD_PRELOAD}" MALLOC_CONF="${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}" \
      /usr/bin/python3 bench/bn_torch.py >> "$torch_times"
  else
    echo "PyTorch timed with glibc malloc only: jemalloc is not installed ($jemalloc; apt-get install libjemalloc2)"
  fi
  sed -n 's/^# //p' "$torch_times"
else
  echo "PyTorch is not installed: no PyTorch column"
fi
"$build/bench/bench_bn" ${torch_times:+--torch "$torch_times"}
"$build/bench/bench_bn" --ablation

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
