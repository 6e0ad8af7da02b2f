#!/usr/bin/env bash
# Resume is exact: a run stopped at a checkpoint and resumed ends with the
# same bits as the uninterrupted run (every parameter, momentum buffer,
# running statistic and num_batches_tracked: the final checkpoint files are
# byte-identical), and its per-step losses after the resume point are the
# same. At P = 1, P = 4 with SyncBN and P = 4 with plain BN, resuming from the
# middle of an epoch (step 15) and from an epoch boundary (step 20); and
# SyncBN in groups of 2 at P = 4 (each group's statistics kept per rank).
# Then a change in the number of ranks: fine for SyncBN over all ranks,
# refused for plain BN and grouped SyncBN.
# Usage: checkpoint_resume.sh SYNCBN MPIEXEC [MPIEXEC FLAGS...]
set -u
syncbn=$1 mpiexec=$2
shift 2
mpiexec_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 320 samples at batch 16: 20 steps an epoch, 3 epochs; checkpoints every 15
# steps and at each epoch's end: 15, 20, 30, 40, 45, 60.
run_args=(train --model seed --train-samples 320 --batch 16 --epochs 3 --checkpoint-every 15 --keep 10 --timeout 120)

# loss of each step >= FROM in a metrics file, one "step loss" per line
losses_from() { sed -n 's/^{"step": \([0-9]*\), "epoch": [0-9]*, "loss": \([^,]*\),.*/\1 \2/p' "$1" | awk -v from="$2" '$1 >= from'; }

for config in "1 bn 0" "4 sync 0" "4 bn 0" "4 sync 2"; do
    set -- $config
    ranks=$1 norm=$2 groups=()
    [ "$3" -gt 0 ] && groups=(--group-size "$3") && norm_label="$norm-groups-of-$3" || norm_label=$norm
    full="$work/full-$ranks-$norm_label"
    launch=("$syncbn")
    [ "$ranks" -gt 1 ] && launch=("$mpiexec" -n "$ranks" "${mpiexec_flags[@]}" "$syncbn")
    "${launch[@]}" "${run_args[@]}" --norm "$norm" "${groups[@]}" --checkpoint-dir "$full" --metrics "$full.jsonl" \
        > "$full.out" 2>&1 ||
        { fail "$ranks ranks $norm_label: the full run failed"; cat "$full.out"; continue; }
    [ "$(cat "$full/latest")" = "step-00000060" ] || fail "$ranks ranks $norm_label: latest is $(cat "$full/latest")"
    for from in 15 20; do
        name=$(printf 'step-%08d' "$from")
        resumed="$work/resumed-$ranks-$norm_label-$from"
        mkdir -p "$resumed"
        cp -r "$full/$name" "$resumed/"
        echo "$name" > "$resumed/latest"
        "${launch[@]}" train --resume "$resumed" --metrics "$resumed.jsonl" > "$resumed.out" 2>&1 ||
            { fail "$ranks ranks $norm_label from $from: the resumed run failed"; cat "$resumed.out"; continue; }
        for file in "$full"/step-00000060/*.safetensors; do
            cmp -s "$file" "$resumed/step-00000060/$(basename "$file")" ||
                fail "$ranks ranks $norm_label from $from: $(basename "$file") differs from the uninterrupted run's"
        done
        [ "$(ls "$full/step-00000060" | wc -l)" -eq "$(ls "$resumed/step-00000060" | wc -l)" ] ||
            fail "$ranks ranks $norm_label from $from: a different set of files"
        want=$(losses_from "$full.jsonl" $((from + 1)))
        got=$(losses_from "$resumed.jsonl" 1)
        [ -n "$want" ] && [ "$want" = "$got" ] || fail "$ranks ranks $norm_label from $from: per-step losses differ after the resume point"
        head -1 "$resumed.jsonl" | grep -q "^{\"step\": $((from + 1))," ||
            fail "$ranks ranks $norm_label from $from: the resumed run did not start at step $((from + 1))"
        echo "ok: $ranks ranks, $norm_label, resumed from step $from: final files byte-identical, $(wc -l <<< "$got") step losses identical"
    done
done
# Another number of ranks: allowed for SyncBN over all ranks (the statistics
# are global), refused with the reason for plain BN and grouped SyncBN (each
# rank's or group's statistics are its own).
for norm in sync bn sync-groups-of-2; do
    moved="$work/moved-$norm"
    mkdir -p "$moved"
    cp -r "$work/full-4-$norm/step-00000020" "$moved/"
    echo "step-00000020" > "$moved/latest"
    "$mpiexec" -n 2 "${mpiexec_flags[@]}" "$syncbn" train --resume "$moved" > "$moved.out" 2>&1
    code=$?
    if [ "$norm" = sync-groups-of-2 ]; then
        [ "$code" -ne 0 ] && grep -q "a grouped-SyncBN run of 4 ranks cannot resume on 2" "$moved.out" ||
            fail "a 4-rank grouped SyncBN run resumed on 2 ranks without the refusal: $(tail -2 "$moved.out")"
    elif [ "$norm" = sync ]; then
        [ "$code" -eq 0 ] && [ -f "$moved/step-00000060/model.safetensors" ] ||
            fail "a 4-rank SyncBN run did not resume on 2 ranks: $(tail -2 "$moved.out")"
    else
        [ "$code" -ne 0 ] && grep -q "a plain-BN run of 4 ranks cannot resume on 2" "$moved.out" ||
            fail "a 4-rank plain-BN run resumed on 2 ranks without the refusal: $(tail -2 "$moved.out")"
    fi
done
echo "ok: a SyncBN run resumes on another number of ranks; plain-BN and grouped-SyncBN runs are refused with the reason"
echo "$failures failed"
[ "$failures" -eq 0 ]
