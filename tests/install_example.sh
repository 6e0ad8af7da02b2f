#!/usr/bin/env bash
# Installs syncbn into a scratch prefix, builds examples/ against it twice
# (CMake find_package and pkg-config), runs it with 1 and 4 ranks, and checks
# that every rank prints the same running statistics as the 1-rank run.
# Usage: install_example.sh SOURCE_DIR BUILD_DIR MPIEXEC [MPIEXEC_FLAGS...]
# $MPICC: the MPI compiler wrapper of the MPI the build used (default mpicc).
set -euo pipefail
source_dir=$1 build_dir=$2 mpiexec=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > /dev/null
cmake -S "$source_dir/examples" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" > /dev/null
cmake --build "$work/example" > /dev/null
libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
PKG_CONFIG_PATH="$libdir/pkgconfig" "${MPICC:-mpicc}" "$source_dir/examples/syncbn_example.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs syncbn) -o "$work/example_pc"
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# One MPI per process: Open MPI's libmpi and MPICH's libmpich together crash in MPI_Init or later.
for exe in "$work/example/syncbn_example" "$work/example_pc"; do
  mpis=$(ldd "$exe" | grep -oE 'lib(mpi|mpich)\.so\.[0-9]+' | sort -u)
  [ "$(printf '%s' "$mpis" | grep -c .)" -eq 1 ] || { echo "FAIL: $exe should load one MPI, loads:" $mpis; exit 1; }
done
one=$("$mpiexec" -n 1 "$@" "$work/example/syncbn_example" | sed 's/^rank 0 of 1: 8 samples, //')
four=$("$mpiexec" -n 4 "$@" "$work/example_pc")
echo "1 rank: $one"
echo "$four"
[ "$(echo "$four" | wc -l)" -eq 4 ] || { echo "FAIL: expected 4 lines"; exit 1; }
[ "$(echo "$four" | sed 's/^rank [0-9] of 4: 2 samples, //' | sort -u)" = "$one" ] ||
  { echo "FAIL: 4 ranks differ from 1 rank"; exit 1; }
# Only the API is exported, and the BN library needs neither BLAS nor zlib nor cJSON.
for lib in "$libdir"/libsyncbn.so "$libdir"/libsyncbn_train.so; do
  extra=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^sbn_' || true)
  [ -z "$extra" ] || { echo "FAIL: $lib exports more than the API:" $extra; exit 1; }
done
if ldd "$libdir/libsyncbn.so" | grep -qE 'libopenblas|libcjson'; then
  echo "FAIL: libsyncbn.so links BLAS or cJSON"; exit 1
fi
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists --print-errors syncbn_train ||
  { echo "FAIL: no usable syncbn_train.pc"; exit 1; }
# The Python package lies beside the library it loads.
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  PYTHONPATH="$libdir/python3/dist-packages" /usr/bin/python3 -c \
    "import syncbn.torch, syncbn._library as l; assert l.lib._name.startswith('$libdir'), l.lib._name" ||
    { echo "FAIL: the installed Python package does not load the installed library"; exit 1; }
fi
echo "OK: installed package builds (CMake and pkg-config) and 4 ranks match 1; only the API is exported"
