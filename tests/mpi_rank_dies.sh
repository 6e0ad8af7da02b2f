#!/usr/bin/env bash
# A rank that dies mid-job: mpiexec must end the whole job with a non-zero
# status within a bounded time (here 60 s), rather than leave the others
# blocked in a SyncBN collective. Usage: mpi_rank_dies.sh MPIEXEC PROGRAM [FLAGS...]
set -u
mpiexec=$1 program=$2
shift 2
start=$(date +%s)
timeout 60 "$mpiexec" -n 3 "$@" "$program"
status=$?
elapsed=$(( $(date +%s) - start ))
echo "mpiexec exited with status $status after ${elapsed}s"
if [ "$status" -eq 124 ]; then echo "FAIL: the job hung until the 60 s limit"; exit 1; fi
if [ "$status" -eq 0 ]; then echo "FAIL: the job reported success although a rank died"; exit 1; fi
echo "OK: the job ended on its own with a failure status"
