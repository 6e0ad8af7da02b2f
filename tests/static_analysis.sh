#!/usr/bin/env bash
# clang's static analyzer over the trainer, evaluation and the model, warnings as errors:
# it finds what no run shows, e.g. a value read after the call that should
# have set it failed. Skipped (77) when clang (with omp.h) is not installed.
# Usage: static_analysis.sh SOURCE_DIR CBLAS_INCLUDE_DIR
set -u
source_dir=$1
cblas_dir=$2
if ! command -v clang > /dev/null || ! echo '#include <omp.h>' | clang -fopenmp -E -x c - > /dev/null 2>&1; then
  echo "SKIP: clang with OpenMP headers is not installed"
  exit 77
fi
failures=0
for file in src/train/trainer.c src/train/evaluate.c src/nn/model.c; do
  if clang --analyze -Xanalyzer -analyzer-werror -std=gnu11 -fopenmp -I"$source_dir/include" -I"$source_dir/src" \
       -I"$cblas_dir" "$source_dir/$file" -o /dev/null; then
    echo "ok: $file"
  else
    echo "FAIL: $file"
    failures=$((failures + 1))
  fi
done
[ "$failures" -eq 0 ]
