#!/usr/bin/env bash
# What a crash while writing can leave behind, and that none of it is ever
# loaded: each case starts from the checkpoints of a run that "crashed"
# after step 45 (15, 20, 30, 40, 45 on disk, the end missing), damages them
# as a crash or a bad disk would, resumes, and checks that the damaged
# checkpoint was skipped with a message naming it, the run resumed from the
# previous good one, and it ended with the uninterrupted run's bits.
# Usage: checkpoint_crash.sh SYNCBN
set -u
syncbn=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
args=(train --model seed --train-samples 320 --batch 16 --epochs 3 --checkpoint-every 15 --keep 10)
"$syncbn" "${args[@]}" --checkpoint-dir "$work/full" > "$work/full.out" 2>&1 || { cat "$work/full.out"; exit 1; }

# crash_case NAME EXPECTED_FIRST_STEP SKIP_MESSAGE DAMAGE-COMMAND...
crash_case() {
    local name=$1 first=$2 message=$3
    shift 3
    local dir="$work/$name"
    mkdir -p "$dir"
    cp -r "$work/full"/step-000000{15,20,30,40,45} "$dir/"
    echo "step-00000045" > "$dir/latest"
    (cd "$dir" && eval "$@")
    if ! "$syncbn" train --resume "$dir" --metrics "$dir.jsonl" > "$dir.out" 2>&1; then
        fail "$name: the resumed run failed: $(tail -2 "$dir.out")"
        return
    fi
    [ -z "$message" ] || grep -q -- "$message" "$dir.out" || fail "$name: no message '$message' in: $(head -3 "$dir.out")"
    head -1 "$dir.jsonl" | grep -q "^{\"step\": $first," || fail "$name: did not resume at step $first: $(head -1 "$dir.jsonl")"
    cmp -s "$work/full/step-00000060/model.safetensors" "$dir/step-00000060/model.safetensors" ||
        fail "$name: the final weights differ from the uninterrupted run's"
    echo "ok: $name: resumed at step $first"
}

crash_case clean 46 ""
crash_case stray-temporaries 46 "" \
    'head -c 1000 /dev/urandom > step-00000045/model.safetensors.tmp-Ab3xYz; echo junk > latest.tmp-Qw1234'
crash_case latest-names-a-missing-step 46 "skipping checkpoint step 99" 'echo step-00000099 > latest'
crash_case latest-garbage 46 "" 'head -c 100 /dev/urandom > latest'
crash_case half-written-step 46 "" \
    'mkdir step-00000050 && head -c 300 step-00000045/model.safetensors > step-00000050/model.safetensors.tmp-Zz9999'
crash_case half-written-step-no-latest 46 "skipping checkpoint step 50" \
    'rm latest; mkdir step-00000050 && cp step-00000045/model.safetensors step-00000050/'

crash_case truncated-model 41 "skipping checkpoint step 45" \
    'head -c 200 step-00000045/model.safetensors > cut && mv cut step-00000045/model.safetensors'
crash_case missing-optimizer 41 "skipping checkpoint step 45.*optimizer.safetensors" 'rm step-00000045/optimizer.safetensors'
crash_case flipped-data-byte 41 "skipping checkpoint step 45.*checksum mismatch" \
    'f=step-00000045/optimizer.safetensors; at=$(( $(stat -c %s $f) - 7 ));
     byte=$(od -An -tu1 -j $at -N 1 $f | tr -d " ");
     printf "\\$(printf %03o $(( (byte + 1) % 256 )))" | dd of=$f bs=1 seek=$at conv=notrunc status=none'
crash_case garbage-model 41 "skipping checkpoint step 45" \
    'head -c 4000 /dev/urandom > step-00000045/model.safetensors'
crash_case two-bad-in-a-row 31 "skipping checkpoint step 40" \
    'rm step-00000045/model.safetensors; head -c 10 step-00000040/model.safetensors > c && mv c step-00000040/model.safetensors'

crash_case optimizer-of-another-step 41 "skipping checkpoint step 45.*differs" \
    'cp step-00000040/optimizer.safetensors step-00000045/optimizer.safetensors'

# The defaults keep the newest 3; a new run refuses a folder that holds another run's checkpoints.
"$syncbn" train --model seed --train-samples 320 --batch 16 --epochs 3 --checkpoint-every 15 \
    --checkpoint-dir "$work/defaults" > "$work/defaults.out" 2>&1 || fail "the run with the default --keep failed"
kept=$(ls -d "$work"/defaults/step-* | wc -l)
[ "$kept" -eq 3 ] || fail "the default --keep kept $kept checkpoints, not 3"
"$syncbn" "${args[@]}" --checkpoint-dir "$work/defaults" > "$work/again.out" 2>&1
code=$?
[ "$code" -eq 1 ] && grep -q "already holds the checkpoints of a run" "$work/again.out" ||
    fail "a new run into a used checkpoint folder: exit $code, $(tail -1 "$work/again.out")"
[ "$(ls -d "$work"/defaults/step-* | wc -l)" -eq 3 ] || fail "the refused run changed the folder"

# Nothing loadable at all: a clear error, exit 1.
mkdir -p "$work/empty/step-00000045"
"$syncbn" train --resume "$work/empty" > "$work/empty.out" 2>&1
code=$?
[ "$code" -eq 1 ] && grep -q "no loadable checkpoint\|no checkpoint found" "$work/empty.out" ||
    fail "a folder without a good checkpoint: exit $code, $(head -2 "$work/empty.out")"
echo "$failures failed"
[ "$failures" -eq 0 ]
