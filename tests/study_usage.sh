#!/usr/bin/env bash
# `syncbn study`'s usage errors (exit 2, naming the flag and the problem),
# --help (exit 0, with the presets and run times), and one study at a time
# in a folder (exit 1 while another holds it). Nothing here trains.
# Usage: study_usage.sh SYNCBN
set -u
syncbn=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every study below also gets a tiny configuration and a folder in $work, so that a check that
# failed to refuse trains for a second instead of starting the full grid in the working folder.
tiny=(--model seed --steps 2 --train-samples 64 --seeds 1 --lr-stress none --batches 1 --out "$work/never")
failures=0
expect() { # expect CODE PATTERN -- ARGS...
  local want=$1 pattern=$2
  shift 3
  local output code
  output=$("$syncbn" "$@" 2>&1)
  code=$?
  local shown="$*"
  shown=${shown//"$work"/WORK}
  [ "${#shown}" -gt 200 ] && shown="${shown:0:200}..."
  if [ "$code" -ne "$want" ] || ! grep -q -- "$pattern" <<< "$output"; then
    echo "FAIL: syncbn $shown -> exit $code (want $want), output lacks '$pattern':"
    echo "$output" | head -5
    failures=$((failures + 1))
  else
    echo "ok: syncbn $shown -> $code"
  fi
}
expect 0 "study     when does SyncBN matter" -- --help
expect 0 "usage: syncbn study" -- study --help
expect 0 "--quick                the quick preset" -- study --help
expect 0 "full default grid" -- study --help
expect 0 "--eval-points K" -- train --help
expect 2 "--batches: '0' is out of range" -- study "${tiny[@]}" --batches 0
expect 2 "--batches: '1,1': 1 is listed twice" -- study "${tiny[@]}" --batches 1,1
expect 2 "--batches: '1,,2': an empty item" -- study "${tiny[@]}" --batches 1,,2
expect 2 "above the largest global batch" -- study "${tiny[@]}" --ranks 1024 --batches 4194304
expect 2 "--lr-stress: '1': a factor of 1 is the main grid" -- study "${tiny[@]}" --lr-stress 1
expect 2 "--lr-stress: 'x' is not a number" -- study "${tiny[@]}" --lr-stress x
expect 2 "--seeds: '0' is out of range" -- study "${tiny[@]}" --seeds 0
expect 2 "--eval-points: at most 62 in a study" -- study "${tiny[@]}" --eval-points 63
expect 2 "--eval-points: '-1' is out of range" -- train --eval-points -1
expect 2 "--alpha: '0.6' is out of range" -- study "${tiny[@]}" --alpha 0.6
expect 2 "--accuracy-level: '1.5' is out of range" -- study "${tiny[@]}" --accuracy-level 1.5
expect 2 "--loss-threshold: '0' is out of range" -- study "${tiny[@]}" --loss-threshold 0
expect 2 "passes the largest seed" -- study "${tiny[@]}" --seed 9223372036854775807 --seeds 2 --batches 1 --out "$work/never"
expect 2 "--batch: a study's global batch is P x each per-rank batch" -- study "${tiny[@]}" --batch 8
expect 2 "unexpected argument" -- study "${tiny[@]}" extra
expect 2 "--out: the folder name is longer than" -- study "${tiny[@]}" --out "$(printf 'x%.0s' $(seq 5000))"
# One study per folder: while another holds OUT/study.lock, a second refuses to start.
mkdir -p "$work/out/runs"
exec 9> "$work/out/study.lock"
flock 9
expect 1 "another study is running in" -- study --model seed --batches 1 --seeds 1 --lr-stress none --steps 2 \
  --train-samples 64 --out "$work/out"
exec 9>&-
echo "$failures failed"
[ "$failures" -eq 0 ]
