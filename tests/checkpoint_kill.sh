#!/usr/bin/env bash
# A rank killed with SIGKILL loses at most the steps since the last
# checkpoint: under mpiexec -n 4 (SyncBN), one rank is killed once the
# second checkpoint is complete; the job must end by itself (no hang; the
# time it took is printed), and `syncbn train --resume` must finish the run
# with the same final bits as an uninterrupted run of the same configuration.
# Usage: checkpoint_kill.sh SYNCBN MPIEXEC [MPIEXEC FLAGS...]
set -u
syncbn=$1 mpiexec=$2
shift 2
work=$(mktemp -d)
victim=""
cleanup() { [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.out; do echo "--- $f"; tail -5 "$f"; done; exit 1; }

# 1600 samples at batch 16: 100 steps an epoch, 8 epochs; a checkpoint every 50 steps.
args=(train --model seed --norm sync --train-samples 1600 --batch 16 --epochs 8 --checkpoint-every 50 --keep 3
      --timeout 30)
"$mpiexec" -n 4 "$@" "$syncbn" "${args[@]}" --checkpoint-dir "$work/full" > "$work/full.out" 2>&1 ||
    fail "the uninterrupted run failed"

"$mpiexec" -n 4 "$@" "$syncbn" "${args[@]}" --checkpoint-dir "$work/killed" > "$work/killed.out" 2>&1 &
job=$!
for _ in $(seq 1 1200); do # the second checkpoint is step 100
    step=$(sed -n 's/^step-0*\([0-9]*\)$/\1/p' "$work/killed/latest" 2>/dev/null)
    [ -n "$step" ] && [ "$step" -ge 100 ] && break
    kill -0 "$job" 2>/dev/null || fail "the run ended before its second checkpoint"
    sleep 0.05
done
[ -n "$step" ] && [ "$step" -ge 100 ] || fail "no second checkpoint appeared"
for pid in $(pgrep -f -- "$syncbn train"); do
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qE '^(OMPI_COMM_WORLD_RANK|PMI_RANK)=2$' && victim=$pid
done
[ -n "$victim" ] || fail "could not find rank 2"
kill -9 "$victim"
killed_at=$(date +%s.%N)
echo "killed rank 2 (pid $victim) after checkpoint step $step"
for _ in $(seq 1 1200); do kill -0 "$job" 2>/dev/null || break; sleep 0.05; done
kill -0 "$job" 2>/dev/null && { kill -9 "$job"; fail "the job still ran 60 s after a rank was killed"; }
wait "$job"
status=$?
echo "the job ended with status $status $(awk -v now="$(date +%s.%N)" -v then="$killed_at" 'BEGIN { printf "%.1f", now - then }') s after the kill"
[ "$status" -ne 0 ] || fail "the job reported success although a rank was killed"
victim=""

"$mpiexec" -n 4 "$@" "$syncbn" train --resume "$work/killed" > "$work/resumed.out" 2>&1 || fail "the resumed run failed"
grep -q "resum" "$work/resumed.out" && grep "resum" "$work/resumed.out" | head -2
for file in "$work"/full/step-00000800/*.safetensors; do
    cmp -s "$file" "$work/killed/step-00000800/$(basename "$file")" ||
        fail "$(basename "$file") of the resumed run differs from the uninterrupted run's"
done
echo "OK: the resumed run ends with the uninterrupted run's bits"
