#!/usr/bin/env bash
# Across nodes: the same SyncBN training on 4 ranks once over shared memory
# (Open MPI's vader BTL) and once over TCP only (as between hosts; here over
# the loopback interface) must give IDENTICAL results: every per-step loss
# and accuracy, the final line, and the checkpoint files (weights, momentum,
# BN running statistics) byte for byte. The collectives fix the reduction
# order (binomial tree, in rank order), so the transport cannot change a bit.
# Then the SyncBN MPI test suite runs on 4 ranks over TCP.
# Open MPI only (--mca). Usage: transport_tcp.sh MPIEXEC SYNCBN TEST_SYNCBN_MPI GOLDEN [MPIEXEC_FLAGS...]
set -euo pipefail
mpiexec=$1 syncbn=$2 test_syncbn_mpi=$3 golden=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# ob1 is the PML that uses the BTLs; UCX (chosen on InfiniBand hosts) would ignore --mca btl.
shm=(--mca pml ob1 --mca btl self,vader)
tcp=(--mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo)
train=(train --norm sync --model convnet --batch 32 --steps 20 --train-samples 2048 --threads 1)

run_training() { # run_training NAME MCA_ARGS...
  local name=$1
  shift
  "$mpiexec" -n 4 "$@" --mca btl_base_verbose 30 "${mpiexec_flags[@]}" "$syncbn" "${train[@]}" \
    --metrics "$work/$name.jsonl" --checkpoint-dir "$work/$name.ckpt" > "$work/$name.out" 2> "$work/$name.err" ||
    { cat "$work/$name.out" "$work/$name.err"; fail "the $name run failed"; }
  tail -n 1 "$work/$name.out"
}
mpiexec_flags=("$@")
run_training shm "${shm[@]}"
run_training tcp "${tcp[@]}"

# The runs really used the transports asked for (Open MPI reports each BTL it initializes).
# (vader is called sm from Open MPI 5 on, which still takes the old name in --mca btl.)
grep -Eq "init of component (vader|sm) returned success" "$work/shm.err" || fail "the shared-memory run did not use vader"
grep -q "init of component tcp returned success" "$work/tcp.err" || fail "the TCP run did not initialize the tcp BTL"
! grep -Eq "init of component (vader|sm) " "$work/tcp.err" || fail "the TCP run initialized shared memory"

# Per step and final lines without their timings; the losses are printed with %.9g (exact for a float).
strip() { sed -E 's/, "(seconds|ms_per_step|ms_per_checkpoint)": [^,}]*//g' "$1"; }
strip "$work/shm.jsonl" > "$work/shm.txt"
strip "$work/tcp.jsonl" > "$work/tcp.txt"
[ "$(grep -c '"step"' "$work/shm.txt")" -eq 20 ] || fail "expected 20 step lines, got: $(cat "$work/shm.txt")"
grep -q '"final": true' "$work/shm.txt" || fail "no final line"
echo "per-step losses (shared memory | TCP):"
paste -d' ' <(grep -o '"loss": [^,]*' "$work/shm.txt") <(grep -o '"loss": [^,]*' "$work/tcp.txt")
cmp "$work/shm.txt" "$work/tcp.txt" || { diff "$work/shm.txt" "$work/tcp.txt"; fail "the metrics differ"; }

# The checkpoints: every file of the newest one, byte for byte.
latest=$(cat "$work/shm.ckpt/latest")
[ "$latest" = "$(cat "$work/tcp.ckpt/latest")" ] || fail "different latest checkpoints"
files=$(cd "$work/shm.ckpt/$latest" && ls)
[ -n "$files" ] || fail "empty checkpoint $latest"
for f in $files; do
  cmp "$work/shm.ckpt/$latest/$f" "$work/tcp.ckpt/$latest/$f" || fail "checkpoint file $latest/$f differs"
done
echo "identical over TCP and shared memory: 20 step lines, the final line, checkpoint $latest ($(echo $files))"

echo "test_syncbn_mpi on 4 ranks over TCP:"
"$mpiexec" -n 4 "${tcp[@]}" "${mpiexec_flags[@]}" "$test_syncbn_mpi" "$golden" || fail "test_syncbn_mpi over TCP"
echo "OK"
