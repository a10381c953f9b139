#!/usr/bin/env bash
# test_interrupt.sh — interrupt and resume: killing a 10-image batch mid-way and re-running with
# --skip-existing yields exactly 10 valid PNGs.
#   1. a 10-image run (tiny model, 64×64, 3 steps) in the background; SIGINT once the 3rd PNG exists;
#      assert exit code 130, the "interrupted: N of 10 images written" message, N PNGs on disk, every one
#      complete (signature, CRC-checked chunks, IEND at the end of the file), no temporary file.
#   2. the same command with --skip-existing: exit 0, exactly 10 valid PNGs whose parameters carry the
#      expected seeds, the N finished ones skipped (message) and not rewritten (same mtime and bytes).
#   3. a second --skip-existing run does nothing at all (10 skipped, 0 written).
#   4. SIGTERM after the 1st PNG: exit 143, "interrupted (SIGTERM): N of 10", N complete PNGs, no temp file.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
VOCAB="$SHARED/clip"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/interrupt
rm -rf "$TMP"
OUT=$TMP/out
mkdir -p "$OUT"
unset SDGEN_VOCAB SDGEN_MODEL
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
no_crash() { # no_crash NAME RC STDERR_FILE
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$3"; then
    bad "$1: sanitizer report (exit $2)"
    sed 's/^/     | /' "$3" | tail -n 20 >&2
  fi
}
pngs() { find "$OUT" -maxdepth 1 -type f -name '*.png' | sort; }
npngs() { pngs | wc -l; }
all_valid() { # all_valid NAME: every file in $OUT is a complete PNG
  local f why n=0
  for f in $(pngs); do
    why=$(png_valid "$f") || { bad "$1: $why"; return; }
    n=$((n + 1))
  done
  ok "$1: all $n PNGs complete"
}

CMD=(-m "$MODEL" --vocab "$VOCAB" -W 64 -H 64 --steps 3 --cfg-scale 7.5 --sampler euler_a --seed 500
  -p "an interrupted batch" --batch-count 10 -o "$OUT/img-{index}.png")

# signal_after SIGNAL N RUN: start the batch in the background, send SIGNAL once N PNGs exist; rc = its exit code
# (A background job of a non-interactive shell starts with SIGINT ignored; sdgen installs its own handler.)
signal_after() {
  local pid t0
  "$SDGEN" "${CMD[@]}" >"$TMP/$3.out" 2>"$TMP/$3.err" &
  pid=$!
  t0=$SECONDS
  while [ "$(npngs)" -lt "$2" ] && kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt 600 ]; do sleep 0.1; done
  kill "-$1" "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
}

# ---- 1. interrupt after the 3rd image ----
signal_after INT 3 run1
no_crash "run 1" "$rc" "$TMP/run1.err"
check "interrupted run: exit code 130" "$rc" 130
msg=$(grep "interrupted:" "$TMP/run1.err")
n=$(printf '%s\n' "$msg" | sed -n 's/.*interrupted: \([0-9]*\) of 10 images written.*/\1/p')
if [ -n "$n" ]; then ok "interrupted run: message says how far it got: $msg"; else
  bad "interrupted run: no 'interrupted: N of 10 images written' message"
  sed 's/^/     | /' "$TMP/run1.err" | tail -n 5 >&2
  n=-1
fi
check "interrupted run: stopped part-way (3 <= N < 10)" "$([ "$n" -ge 3 ] && [ "$n" -lt 10 ] && echo yes || echo "no (N=$n)")" yes
check "interrupted run: N PNGs on disk" "$(npngs)" "$n"
check "interrupted run: no temporary or partial file" "$(find "$OUT" -type f ! -name 'img-*.png' | wc -l)" 0
all_valid "interrupted run"
# the finished ones are img-1 … img-N (in order)
for ((i = 1; i <= n; i++)); do [ -f "$OUT/img-$i.png" ] || bad "interrupted run: img-$i.png missing"; done
stamp() { for f in $(pngs); do echo "$f $(stat -c %y "$f") $(sha256sum <"$f" | cut -c1-16)"; done; }
before=$(stamp)
sleep 1.1 # so a rewrite would show in the mtime even on coarse-timestamp file systems

# ---- 2. resume ----
"$SDGEN" "${CMD[@]}" --skip-existing >"$TMP/run2.out" 2>"$TMP/run2.err"
rc=$?
no_crash "run 2" "$rc" "$TMP/run2.err"
check "resumed run: exit code 0" "$rc" 0
check "resumed run: exactly 10 PNGs" "$(npngs)" 10
check "resumed run: nothing else in the folder" "$(find "$OUT" -type f ! -name 'img-*.png' | wc -l)" 0
all_valid "resumed run"
check "resumed run: $n skipped (message per image)" "$(grep -c 'exists, skipped (--skip-existing)' "$TMP/run2.err")" "$n"
# compare the first N lines of the sorted listings: same files, same mtimes, same bytes
check "resumed run: finished images not rewritten (mtime and content)" \
  "$(stamp | grep -Ff <(printf '%s\n' "$before" | cut -d' ' -f1) | sort)" "$(printf '%s\n' "$before" | sort)"
for i in $(seq 1 10); do
  seed=$(png_params "$OUT/img-$i.png" | tail -n 1 | sed -n 's/.*, Seed: \([0-9]*\),.*/\1/p')
  [ "$seed" = $((499 + i)) ] || bad "img-$i.png: seed '$seed', want $((499 + i))"
done
ok "resumed run: img-1..10 carry seeds 500..509"

# ---- 3. nothing left to do ----
"$SDGEN" "${CMD[@]}" --skip-existing -q >"$TMP/run3.out" 2>"$TMP/run3.err"
rc=$?
no_crash "run 3" "$rc" "$TMP/run3.err"
check "complete batch resumed again: exit code 0" "$rc" 0
check "complete batch resumed again: still 10 PNGs" "$(npngs)" 10
check "complete batch resumed again: nothing written" "$(cat "$TMP/run3.out")" ""

# ---- 4. SIGTERM stops the same way, exit 143 ----
rm -rf "$OUT"
mkdir -p "$OUT"
signal_after TERM 1 run4
no_crash "run 4" "$rc" "$TMP/run4.err"
check "SIGTERM: exit code 143" "$rc" 143
n4=$(sed -n 's/.*interrupted (SIGTERM): \([0-9]*\) of 10 images written.*/\1/p' "$TMP/run4.err")
check "SIGTERM: message says how far it got" "$([ -n "$n4" ] && echo yes || echo no)" yes
check "SIGTERM: N PNGs on disk" "$(npngs)" "${n4:-x}"
check "SIGTERM: no temporary or partial file" "$(find "$OUT" -type f ! -name 'img-*.png' | wc -l)" 0
all_valid "SIGTERM run"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
