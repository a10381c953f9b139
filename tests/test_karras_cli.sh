#!/usr/bin/env bash
# test_karras_cli.sh — Karras σ for heun, lms, dpm2, dpm2_a and unipc through the CLI on the tiny SD 1.x
# model (docs/SEMANTICS.md §5.3; the σ lists themselves are checked against the numpy re-derivation in
# test_sched). Asserted per sampler: `--schedule karras` runs (exit 0, a valid PNG) and gives another
# image than the default schedule; the infotext says "Sampler: <A1111 name>, Schedule type: Karras" as
# A1111 1.9+ writes it; reading those two fields back (`--sampler NAME --schedule TYPE`) and A1111's
# pre-1.9 combined name ("LMS Karras", "DPM2 a Karras", ...) both reproduce the PNG byte for byte.
# ddim, ddpm and lcm still refuse Karras with exit 2 and a message naming the scheduler class.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
VOCAB="$SHARED/clip"
if [ ! -f "$MODEL" ]; then
  echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"
  exit 77
fi
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/karras_cli
rm -rf "$TMP"
mkdir -p "$TMP"
unset SDGEN_VOCAB SDGEN_MODEL
export XDG_CACHE_HOME=$TMP/cache
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
has() { case "$2" in *"$3"*) ok "$1";; *) bad "$1: '$3' not in '$2'";; esac; }

BASE=(-m "$MODEL" --vocab "$VOCAB" -p "a lighthouse at dusk" -W 64 -H 64 --seed 5 --steps 4 --overwrite)
run() {
  local n=$1
  shift
  "$SDGEN" "${BASE[@]}" -o "$TMP/$n.png" "$@" >"$TMP/$n.out" 2>"$TMP/$n.err"
}
same() { if cmp -s "$TMP/$2.png" "$TMP/$3.png"; then ok "$1"; else bad "$1: $2.png and $3.png differ"; fi; }
sane() {
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$TMP/$1.err"; then bad "$1: sanitizer report"; fi
}
# field TEXT KEY: the value of "KEY: value" in the infotext's last line
field() { printf '%s\n' "$1" | tail -n 1 | tr ',' '\n' | sed -n "s/^ *$2: //p" | head -n 1; }

for pair in "heun:Heun" "lms:LMS" "dpm2:DPM2" "dpm2_a:DPM2 a" "unipc:UniPC"; do
  s=${pair%%:*}
  a=${pair#*:}
  run "$s-k" --sampler "$s" --schedule karras
  check "$s karras: exit 0" $? 0
  sane "$s-k"
  if png_valid "$TMP/$s-k.png"; then ok "$s karras: valid PNG"; else bad "$s karras: not a valid PNG"; fi
  run "$s-d" --sampler "$s"
  check "$s default: exit 0" $? 0
  if cmp -s "$TMP/$s-k.png" "$TMP/$s-d.png"; then bad "$s: karras and default give the same image"; else
    ok "$s: karras differs from the default schedule"; fi
  p=$(png_params "$TMP/$s-k.png")
  has "$s karras infotext" "$p" "Steps: 4, Sampler: $a, Schedule type: Karras, CFG scale:"
  has "$s default infotext" "$(png_params "$TMP/$s-d.png")" "Sampler: $a, Schedule type: Automatic,"
  # read the infotext's fields back
  rs=$(field "$p" Sampler)
  rt=$(field "$p" "Schedule type")
  check "$s: infotext Sampler" "$rs" "$a"
  check "$s: infotext Schedule type" "$rt" "Karras"
  run "$s-rt" --sampler "$rs" --schedule "$rt"
  check "$s: --sampler '$rs' --schedule '$rt': exit 0" $? 0
  same "$s: infotext read back reproduces the PNG" "$s-k" "$s-rt"
  run "$s-old" --sampler "$a Karras"
  check "$s: --sampler '$a Karras': exit 0" $? 0
  same "$s: A1111's old name '$a Karras' reproduces the PNG" "$s-k" "$s-old"
done

for s in ddim ddpm lcm; do
  run "$s-k" --sampler "$s" --schedule karras
  check "$s karras refused: exit 2" $? 2
  sane "$s-k"
  has "$s karras refused: message" "$(cat "$TMP/$s-k.err")" "karras is not available for the $s sampler"
  if [ -e "$TMP/$s-k.png" ]; then bad "$s karras: a PNG was written"; else ok "$s karras: no PNG"; fi
done
has "lcm karras: names LCMScheduler" "$(cat "$TMP/lcm-k.err")" "LCMScheduler"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
