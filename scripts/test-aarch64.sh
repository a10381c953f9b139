#!/usr/bin/env bash
# The portable build on aarch64: cross-compiles sdgen with Debian's gcc-aarch64-linux-gnu
# (cmake/aarch64-linux-gnu.cmake) into build-aarch64/ and runs the tests that need no full-size
# checkpoint (ctest -LE full) under qemu-user, so the plain-C kernels (docs/ARCHITECTURE.md
# "CPU backend") are checked against the golden references on another architecture.
# Installs what it needs first (idempotent, like scripts/setup.sh; as root or through sudo).
# The programs run with the arm64 multiarch loader and libraries (libc6:arm64, libgomp1:arm64;
# cmake/aarch64-linux-gnu.cmake says why not the cross toolchain's), one OpenMP and one OpenBLAS
# thread (tests/CMakeLists.txt).
# Left out by default, to keep the run near 10 minutes: four tests whose subject does not depend
# on the architecture (tiling, batches, signals around the same kernels, which test_vae and
# test_golden_cli check) and which are the slowest under emulation (measured on 2 shared cores:
# test_batch_cli 344 s, test_vae_tiling_cli 333 s, test_vae_tiling 272 s, test_interrupt 158 s;
# the whole -LE full suite 1591 s). `--all` runs them too; other arguments go to ctest.
# Reference data: ../shared beside the checkout, or $SDGEN_SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
pkgs=(cmake make gcc-aarch64-linux-gnu qemu-user libopenblas-dev:arm64 libcjson-dev:arm64 zlib1g-dev:arm64 libgomp1:arm64
  libmicrohttpd-dev:arm64 libstb-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-aarch64: installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

shared="${SDGEN_SHARED:-$(pwd)/../shared}"
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DSDGEN_SHARED_DIR="$shared" >/dev/null
cmake --build build-aarch64 -j"$jobs"
# ELF e_machine (2 bytes at offset 18) is 183 for AArch64
[ "$(od -An -tu2 -j18 -N2 build-aarch64/sdgen | tr -d ' ')" = 183 ] ||
  { echo "test-aarch64: build-aarch64/sdgen is not an aarch64 binary" >&2; exit 1; }

echo "== aarch64 under qemu-user: the numerics and loaders on the portable path =="
start=$(date +%s)
rc=0
# Under emulation a test runs 10-50x slower, so by default the ones that exercise the portable kernels
# and the readers (ops, RNG, schedules, tokenizer, networks, golden images) run; the server, batch,
# shard, Slurm, install and signal tests check the command around them, the same on every
# architecture, and run natively. --all runs every test without a full-size checkpoint.
only=(-R '^(test_ops|test_rng|test_safetensors|test_tokenizer|test_tokenize_cli|test_prompt|test_sched|test_clip|test_unet|test_vae|test_model|test_golden_cli|test_demo|test_params|test_image|test_batch|test_sha256|test_info|test_bad_inputs|test_arena|test_arena_oom|test_options)$')
if [ "${1:-}" = "--all" ]; then
  only=()
  shift
fi
ctest --test-dir build-aarch64 --output-on-failure -j1 -LE full "${only[@]}" "$@" || rc=$?
echo "test-aarch64: ctest under qemu took $(( $(date +%s) - start )) s"
exit $rc
