#!/usr/bin/env bash
# A study killed mid-way (kill -9 of its whole process group: the study,
# mpiexec and the ranks of the run in progress) and started again with the
# same command finishes the grid with no run repeated and none lost: the
# restart skips exactly the runs recorded before the kill and runs the
# others once. Then a torn last record (a fragment with no newline) does not
# swallow the next record, and a larger grid (a third seed) reuses the runs
# it shares with the first.
# Usage: study_resume.sh SYNCBN
set -uo pipefail
syncbn=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/study
args=(study --model seed --batches 1 --ranks 2 --lr-stress none --steps 30 --train-samples 128 --eval-points 1
      --no-plot --out "$out")
fail() {
  echo "FAIL: $*"
  exit 1
}
records() { [ -f "$out/runs.jsonl" ] && grep -c . "$out/runs.jsonl" || echo 0; }
# Whether a process of ours still names the runs folder (the killed run's mpiexec or ranks): /proc,
# matched inside bash, so that no checking process carries the pattern itself.
leftovers() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    [[ "$(tr '\0' ' ' < "$f" 2> /dev/null)" == *"$out/runs/"* ]] && return 0
  done
  return 1
}

setsid "$syncbn" "${args[@]}" --seeds 2 > "$work/log1" 2>&1 &
leader=$!
for _ in $(seq 600); do # until 2 of the 6 runs are recorded (at most 60 s)
  [ "$(records)" -ge 2 ] && break
  kill -0 "$leader" 2> /dev/null || break
  sleep 0.1
done
kill -9 -- -"$leader" 2> /dev/null
wait "$leader" 2> /dev/null
before=$(records)
[ "$before" -ge 2 ] && [ "$before" -lt 6 ] || fail "killed with $before of 6 runs recorded (want 2 to 5)"
# The killed run's ranks end with their mpiexec; wait until none is left writing.
for _ in $(seq 50); do
  leftovers || break
  sleep 0.2
done
leftovers && fail "processes of the killed study still run"
echo "killed with $before runs recorded"

"$syncbn" "${args[@]}" --seeds 2 > "$work/log2" 2>&1 || { tail -20 "$work/log2"; fail "the restarted study failed"; }
grep -q "6 runs; $before recorded in .* (skipped), $((6 - before)) to run" "$work/log2" ||
  fail "the restart did not skip exactly the $before recorded runs: $(grep '^study:' "$work/log2")"
ran=$(grep -c '^\[' "$work/log2")
[ "$ran" -eq $((6 - before)) ] || fail "the restart ran $ran runs, want $((6 - before))"
/usr/bin/python3 "$here/study_check.py" records "$out" 6 || fail "records after the restart"
echo "ok: restarted after kill -9: $before skipped, $ran run, 6 recorded once each"

# A kill inside the write of a record would leave a torn line: the next record must not glue onto it.
printf '{"key": "model=seed norm=bn torn' >> "$out/runs.jsonl"
"$syncbn" "${args[@]}" --seeds 3 > "$work/log3" 2>&1 || { tail -20 "$work/log3"; fail "the third seed failed"; }
grep -q "9 runs; 6 recorded in .* (skipped), 3 to run" "$work/log3" || fail "$(grep '^study:' "$work/log3")"
grep -v torn "$out/runs.jsonl" > "$work/records" && cp "$work/records" "$out/runs.jsonl"
/usr/bin/python3 "$here/study_check.py" records "$out" 9 || fail "records after the torn line"
echo "ok: a torn record is left alone; a third seed reuses the 6 runs of the first two"
