#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds release + ASan/UBSan, runs ctest in both.
# The full-size (gigabyte) checkpoint tests (label "full") run in the release build only.
# Reference data: ../shared beside the checkout, or $SDGEN_SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh --asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== release build: all tests =="
ctest --test-dir build --output-on-failure -j1
echo "== ASan+UBSan build: all tests except the full-size ones =="
ctest --test-dir build-asan --output-on-failure -j1 -LE full
