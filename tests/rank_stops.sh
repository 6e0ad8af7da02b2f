#!/usr/bin/env bash
# A rank that stops answering (SIGSTOP, as a hung node or a debugger would):
# every other rank must give up after the configured timeout with a message
# naming the collective and the layer, `syncbn train` must exit non-zero
# instead of waiting forever, and the metrics file must hold only whole lines.
# Usage: rank_stops.sh MPIEXEC SYNCBN [MPIEXEC FLAGS...]
set -u
mpiexec=$1 syncbn=$2
shift 2
dir=$(mktemp -d)
stopped=""
cleanup() {
    [ -n "$stopped" ] && kill -9 "$stopped" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
timeout_seconds=3
fail() { echo "FAIL: $*"; echo "--- job output:"; head -40 "$dir/out"; exit 1; }

"$mpiexec" -n 4 "$@" "$syncbn" train --norm sync --model seed --train-samples 2048 --batch 8 --epochs 1000 \
    --timeout "$timeout_seconds" --metrics "$dir/metrics.jsonl" > "$dir/out" 2>&1 &
job=$!

# Wait until training is under way, then stop rank 2 (found by the rank
# variable its launcher gave it: OpenMPI's or MPICH's).
for _ in $(seq 1 600); do [ -s "$dir/metrics.jsonl" ] && break; sleep 0.1; done
[ -s "$dir/metrics.jsonl" ] || fail "training never started"
for pid in $(pgrep -f -- "$syncbn train"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qE '^(OMPI_COMM_WORLD_RANK|PMI_RANK)=2$'; then
        stopped=$pid
    fi
done
[ -n "$stopped" ] || fail "could not find rank 2's process"
kill -STOP "$stopped"
stop_time=$(date +%s)
echo "stopped rank 2 (pid $stopped)"

# The job must end by itself: the ranks time out and exit with an error.
limit=$((timeout_seconds + 60))
while kill -0 "$job" 2>/dev/null; do
    [ $(( $(date +%s) - stop_time )) -gt "$limit" ] && { kill -9 "$job"; fail "the job still ran ${limit} s after a rank stopped"; }
    sleep 0.2
done
wait "$job"
status=$?
echo "the job ended with status $status, $(( $(date +%s) - stop_time )) s after the stop"
[ "$status" -ne 0 ] || fail "the job reported success although a rank stopped"

grep -q "did not complete within the $timeout_seconds s timeout" "$dir/out" || fail "no rank reported the timeout"
grep -q "some rank did not reach this collective or stopped responding" "$dir/out" || fail "no hint at a stopped rank"
grep -qE "(SyncBN layer [0-9]+ \([0-9]+ channels\) (forward|backward)|step [0-9]+: [a-z ]+)" "$dir/out" ||
    fail "the message names neither the layer nor the trainer's collective"
grep -E "SBN_ERR_COMM" "$dir/out" | head -3

# Rank 0 writes the metrics: whatever it wrote before the end is whole lines.
[ "$(tail -c 1 "$dir/metrics.jsonl" | od -An -c | tr -d ' ')" = '\n' ] || fail "the metrics file ends mid-line"
bad=$(grep -cvE '^\{.*\}$' "$dir/metrics.jsonl")
[ "$bad" -eq 0 ] || fail "$bad metrics lines are not whole JSON objects"
echo "OK: $(wc -l < "$dir/metrics.jsonl") whole metrics lines; every surviving rank timed out and the job ended"
