#!/usr/bin/env bash
# Configure and build sdgen: release build in build/ (and, with --asan, an ASan+UBSan build in build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SDGEN_SHARED:-$(pwd)/../shared}"
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSDGEN_SHARED_DIR="$shared" >/dev/null
cmake --build build -j"$jobs"
if [ "${1:-}" = "--asan" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSDGEN_SANITIZE=ON -DSDGEN_SHARED_DIR="$shared" \
    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$jobs"
fi
