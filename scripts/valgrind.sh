#!/usr/bin/env bash
# valgrind.sh — the tiny-model generation and the C unit tests under valgrind's memcheck.
#
#   scripts/valgrind.sh [BUILD_DIR]        (default: build-rel; a Release or RelWithDebInfo build, not ASan)
#
# Environment: VG_SKIP="test_unet test_vae" skips unit tests by name (test_unet takes ~25 s natively, i.e.
# ~15 min under memcheck on a busy 2-core machine); VG_ONLY="sdgen test_image" runs only those;
# VG_LOG_DIR (default BUILD_DIR/valgrind) keeps one log per program.
#
# What counts (docs/RELIABILITY.md): invalid reads/writes, uses of uninitialised values, invalid frees and
# definite leaks, i.e. `--errors-for-leak-kinds=definite`. "Still reachable" and "possibly lost" blocks
# (OpenBLAS / OpenMP thread pools and buffers that live until exit) are reported in the logs but are not
# errors. scripts/valgrind.supp holds the suppressions, if any are needed.
# Programs run with one BLAS/OpenMP thread to keep memcheck's serialised threads fast.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-rel}
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
SHARED=${SDGEN_SHARED:-$ROOT/../shared}
LOGS=${VG_LOG_DIR:-$BUILD/valgrind}
mkdir -p "$LOGS" "$BUILD/test-tmp/valgrind"
LOGS=$(cd "$LOGS" && pwd)
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
[ -x "$BUILD/sdgen" ] || { echo "valgrind.sh: $BUILD/sdgen not built" >&2; exit 2; }

export SDGEN_SHARED=$SHARED SDGEN_SOURCE_DIR=$ROOT SDGEN=$BUILD/sdgen SDGEN_TEST_TMP=$BUILD/test-tmp/valgrind
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# sdgen re-executes itself via /proc/self/exe to pick OpenBLAS kernels (src/main.c); under valgrind that
# path is valgrind's own tool binary, so choose here. Sandybridge = AVX kernels without FMA: valgrind 3.19
# has no AVX-512, and it emulates every FMA3 instruction with a per-lane helper call, so the Haswell (FMA)
# kernels run ~1000x slower than natively (test_vae: no progress in 5 min under --tool=none; with
# Sandybridge kernels it finishes in 29 s).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx /proc/cpuinfo; then export OPENBLAS_CORETYPE=Sandybridge; fi
export SDGEN_NO_BLAS_SELECT=1
unset SDGEN_VOCAB SDGEN_MODEL

VG=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible --errors-for-leak-kinds=definite
  --track-origins=yes --error-exitcode=99 --num-callers=30 --suppressions="$ROOT/scripts/valgrind.supp")

want() { # want NAME: selected by VG_ONLY / VG_SKIP?
  if [ -n "${VG_ONLY:-}" ]; then case " $VG_ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; fi
  case " ${VG_SKIP:-} " in *" $1 "*) return 1 ;; esac
  return 0
}

failed=0
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"
run() { # run NAME EXPECTED_EXIT PROGRAM ARGS...
  local name=$1 want_rc=$2 log=$LOGS/$1.log t0 rc verdict errs defl line
  shift 2
  want "$name" || { printf '%-22s skipped\n' "$name" | tee -a "$SUMMARY"; return; }
  t0=$SECONDS
  "${VG[@]}" --log-file="$log" "$@" >"$LOGS/$name.out" 2>&1
  rc=$?
  errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
  defl=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -n 1)
  if [ -z "$errs" ]; then verdict="NO MEMCHECK SUMMARY"; failed=1
  elif [ "$rc" = 99 ]; then verdict="MEMCHECK ERRORS"; failed=1
  elif [ "$rc" != "$want_rc" ]; then verdict="FAILED (exit $rc)"; failed=1
  else verdict="clean (exit $rc)"; fi
  line=$(printf '%-22s %-18s errors %-3s definitely lost %-7s bytes %5d s' "$name" "$verdict" "${errs:-?}" \
    "${defl:-0}" $((SECONDS - t0)))
  echo "$line" | tee -a "$SUMMARY"
}

MODEL=$SHARED/golden/models/tiny-sd1.safetensors
OUT=$SDGEN_TEST_TMP
rm -f "$OUT"/vg-*.png
# 1. generation with the tiny models: txt2img with CFG, img2img without, the F16 SD 2.x file, a refused input
run sdgen-txt2img 0 "$BUILD/sdgen" -m "$MODEL" --vocab "$SHARED/clip" -W 64 -H 64 --steps 1 --seed 1 \
  -p "a (red:1.2) apple" -n blurry -o "$OUT/vg-1.png"
run sdgen-img2img 0 "$BUILD/sdgen" -m "$MODEL" --vocab "$SHARED/clip" --steps 2 --strength 0.5 --cfg-scale 1 \
  --sampler dpmpp_2m --seed 2 -p "an apple" -i "$ROOT/tests/fixtures/images/lanczos_64x48.png" -o "$OUT/vg-2.png"
run sdgen-sd2-f16 0 "$BUILD/sdgen" -m "$SHARED/golden/models/tiny-sd2.safetensors" --vocab "$SHARED/clip" \
  -W 64 -H 64 --steps 1 --seed 3 --sampler ddim -p "an apple" -o "$OUT/vg-3.png"
run sdgen-bad-input 2 "$BUILD/sdgen" -m "$MODEL" --vocab "$SHARED/clip" -W 60 -p x -o "$OUT/vg-4.png"
printf '%s\n' '# two good items, one malformed' '{"prompt": "one"}' '{"prompt": "two", "stepz": 1}' \
  '{"prompt": "three", "seed": 9}' >"$OUT/vg-batch.jsonl"
run sdgen-batch 1 "$BUILD/sdgen" -m "$MODEL" --vocab "$SHARED/clip" -W 64 -H 64 --steps 1 --cfg-scale 1 --seed 4 \
  --prompts "$OUT/vg-batch.jsonl" \
  -o "$OUT/vg-b{index}.png"

# 2. the C unit tests (tests/test_*.c) but the full-size ones and the CLI golden test (it runs sdgen as a
# child process; the generation is covered above)
cd "$BUILD/tests" || exit 2
for t in "$BUILD"/tests/test_*; do
  n=$(basename "$t")
  [ -f "$t" ] && [ -x "$t" ] || continue
  case "$n" in *_full | test_golden_cli) continue ;; esac
  run "$n" 0 "$t"
done

echo "valgrind.sh: logs in $LOGS; summary in $SUMMARY"
[ "$failed" = 0 ] && echo "valgrind.sh: all clean" || echo "valgrind.sh: FAILURES (see the logs)"
exit "$failed"
