#!/usr/bin/env bash
# What checkpointing costs `convnet` training: the same run (B = 32, 1 rank,
# 2000 steps) with a checkpoint every 1000 steps (the default cadence); prints the step time, the time to write one checkpoint (all files,
# fsyncs included), the time to resume from one (read, check, load), and the
# share of training time the default cadence costs.
# Usage: bench/checkpoint_cost.sh BUILD_DIR
set -euo pipefail
syncbn=${1:-build}/syncbn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
"$syncbn" train --steps 2000 --checkpoint-dir "$work/ckpt" --checkpoint-every 1000 --metrics "$work/m.jsonl" > /dev/null
final=$(tail -1 "$work/m.jsonl")
field() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" <<< "$final"; }
step_ms=$(field ms_per_step) save_ms=$(field ms_per_checkpoint) saves=$(field checkpoints)
# Resuming a finished run does no step; the trainer reports the load time.
load_ms=$("$syncbn" train --resume "$work/ckpt" 2>&1 >/dev/null | sed -n 's/.*checkpoint loaded in \([0-9.]*\) ms.*/\1/p')
awk -v step="$step_ms" -v save="$save_ms" -v saves="$saves" -v load="$load_ms" 'BEGIN {
    printf "| ms/step | checkpoints in 2000 steps | ms per checkpoint | share of training time at every 1000 steps | ms to load one on resume |\n"
    printf "|---|---|---|---|---|\n"
    printf "| %.2f | %d | %.2f | %.3f%% | %.2f |\n", step, saves, save, 100 * save / (1000 * step), load
}'
