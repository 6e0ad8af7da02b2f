#!/usr/bin/env bash
# `syncbn compare` when memory runs out while it reads a run's losses: a
# message and exit 1, not a crash. fail_alloc.so (LD_PRELOAD, this process
# only) fails the allocation of one size: 8192 bytes is compare.c's first
# buffer of 1024 losses, 16384 bytes its growth to 2048 (after 1024 steps).
# Usage: compare_no_memory.sh SYNCBN FAIL_ALLOC_SO
set -u
syncbn=$1
shim=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
expect_no_memory() { # expect_no_memory BYTES PATTERN ARGS...
  local bytes=$1 pattern=$2 code
  shift 2
  LD_PRELOAD=$shim SYNCBN_FAIL_ALLOC_SIZE=$bytes "$syncbn" compare --model seed --ranks 2 --train-samples 64 \
    --no-plot --out "$work/out" "$@" > "$work/log" 2>&1
  code=$?
  if [ "$code" -ne 1 ] || ! grep -q -- "$pattern" "$work/log"; then
    echo "FAIL: $bytes-byte allocations failing, compare $* -> exit $code (want 1), output lacks '$pattern':"
    tail -5 "$work/log"
    failures=$((failures + 1))
  else
    echo "ok: $bytes-byte allocations failing -> $(grep -- "$pattern" "$work/log")"
  fi
}
expect_no_memory 8192 "no memory for the losses of run a" --batch 4 --steps 3
expect_no_memory 16384 "no memory for the losses of run a (1024 steps)" --batch 2 --epochs 40 --steps 1030
echo "$failures failed"
[ "$failures" -eq 0 ]
