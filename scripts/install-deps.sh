#!/usr/bin/env bash
# Installs the Debian packages syncbn needs to build, test and run its demo.
# Idempotent: does nothing when every package is already installed.
# Usage: scripts/install-deps.sh [--bench]
# PyTorch (python3-torch) is a test dependency too: the interop test loads our
# exported files with torch.load and checks logits against PyTorch's.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev
  libopenblas-dev zlib1g-dev libcmocka-dev libcjson-dev
  mpi-default-dev mpi-default-bin
  mpich libmpich-dev
  libdnnl-dev
  dataset-fashion-mnist
  gnuplot-nox
  python3 python3-torch python3-numpy
  libjemalloc2 python3-mpi4py
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
