#!/usr/bin/env bash
# test_batch_cli.sh — batches through the CLI (requirement: a batch file of 20 lines with 2 malformed
# lines produces 18 images and two clear errors; the PNG metadata of each image parses back to its parameters).
#   1. JSON Lines batch: 20 items (with # comments and blank lines between them), 2 malformed → exit 1, exactly
#      18 valid PNGs, two errors naming FILE:LINE (the file's own line numbers), and each PNG's `parameters`
#      chunk gives back its prompt, negative prompt, steps, sampler (A1111 name), schedule type, CFG scale,
#      seed (the item's, or run seed + item index − 1) and size.
#   2. plain-text batch (one prompt per line) with a {index}-{prompt} template.
#   3. --batch-count N with {index}/{seed}/{prompt} templates, and a fixed name numbered "-{index}".
#   4. "preset" on a line: fills what the line and the command line leave open, as --preset does; an
#      unknown name fails that line alone (FILE:LINE and the key).
# Tiny model, 64×64, 1–2 steps: about 25 images of a few seconds each.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
VOCAB="$SHARED/clip"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/batch-cli
rm -rf "$TMP"
mkdir -p "$TMP"
unset SDGEN_VOCAB SDGEN_MODEL
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
no_crash() { # no_crash NAME RC STDERR_FILE
  if [ "$2" -ge 128 ] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$3"; then
    bad "$1: crash or sanitizer report (exit $2)"
    sed 's/^/     | /' "$3" | tail -n 20 >&2
  fi
}

# check_png NAME FILE PROMPT NEGATIVE STEPS SAMPLER SCHEDULE CFG SEED SIZE: a valid PNG whose parameters
# chunk parses back (A1111 infotext: prompt line, optional "Negative prompt:" line, "Key: value, ..." line)
check_png() {
  local name=$1 f=$2 prompt=$3 neg=$4 steps=$5 sampler=$6 sched=$7 cfg=$8 seed=$9 size=${10}
  if [ ! -f "$f" ]; then bad "$name: $f missing"; return; fi
  local why
  why=$(png_valid "$f") || { bad "$name: $why"; return; }
  local text n first last
  text=$(png_params "$f") || { bad "$name: no parameters chunk"; return; }
  n=$(printf '%s\n' "$text" | wc -l)
  first=$(printf '%s\n' "$text" | head -n 1)
  last=$(printf '%s\n' "$text" | tail -n 1)
  local f_ok=1
  [ "$first" = "$prompt" ] || { bad "$name: prompt '$first', want '$prompt'"; f_ok=0; }
  if [ -n "$neg" ]; then
    [ "$n" = 3 ] && [ "$(printf '%s\n' "$text" | sed -n 2p)" = "Negative prompt: $neg" ] ||
      { bad "$name: negative prompt line wrong: $text"; f_ok=0; }
  else
    [ "$n" = 2 ] || { bad "$name: $n lines, want 2 (no negative prompt): $text"; f_ok=0; }
  fi
  local want="Steps: $steps, Sampler: $sampler, Schedule type: $sched, CFG scale: $cfg, Seed: $seed, Size: $size, "
  case "$last" in
  "$want"*) ;;
  *) bad "$name: parameters '$last', want '$want...'"; f_ok=0 ;;
  esac
  case "$last" in *", Model: tiny-sd1, "*) ;; *) bad "$name: no 'Model: tiny-sd1' in '$last'"; f_ok=0 ;; esac
  [ $f_ok = 1 ] && ok "$name: $(basename "$f") parses back ($want)"
}

RUN=(-m "$MODEL" --vocab "$VOCAB" -W 64 -H 64 --steps 1 --sampler euler --seed 1000)

# ================= 1. JSON Lines: 20 items, 2 malformed =================
OUT=$TMP/jsonl
mkdir -p "$OUT"
B=$TMP/batch.jsonl
# Expected results, one row per item in file order: file line | prompt | negative | seed | steps | sampler |
# schedule | cfg | size | output file ("" = malformed line). Item k (1-based) without a seed gets 1000 + k − 1;
# {index} counts only the images made (18).
cat >"$B" <<EOF
# sdgen batch: JSON Lines (the first line that is not blank or a comment starts with '{')

{"prompt": "a red apple"}
{"prompt": "a green pear", "seed": 42, "steps": 2, "sampler": "ddim"}
{"prompt": "a blue bowl", "negative_prompt": "blurry, low quality"}
{"prompt": "a cat", "sampler": "euler_a"}
{"prompt": "a dog", "sampler": "dpmpp_2m", "schedule": "karras"}
  # an indented comment
{"prompt": "a wide field", "width": 72}
{"prompt": "no guidance", "cfg_scale": 1}
{"prompt": "broken line", "steps": }
{"prompt": "a house, at night", "cfg_scale": 3.5}
{"prompt": "ddpm sampler", "sampler": "ddpm", "seed": null}
{"prompt": "fixed seed", "seed": 7}

{"prompt": "item twelve"}
{"prompt": "item thirteen", "height": 56}
{"prompt": "item fourteen"}
{"prompt": "item fifteen", "steps": 1}
{"prompt": "typo key", "stepz": 2}
{"prompt": "custom output", "output": "$OUT/custom-{seed}.png"}
{"prompt": "item eighteen", "negative_prompt": "ugly"}
{"prompt": "item nineteen", "seed": 18446744073709551615}
{"prompt": "item twenty", "sampler": "euler_a", "schedule": "karras"}
EOF
EXPECT=$(
  cat <<EOF
3|a red apple||1000|1|Euler|Automatic|7.5|64x64|1-1000.png
4|a green pear||42|2|DDIM|Automatic|7.5|64x64|2-42.png
5|a blue bowl|blurry, low quality|1002|1|Euler|Automatic|7.5|64x64|3-1002.png
6|a cat||1003|1|Euler a|Automatic|7.5|64x64|4-1003.png
7|a dog||1004|1|DPM++ 2M|Karras|7.5|64x64|5-1004.png
9|a wide field||1005|1|Euler|Automatic|7.5|72x64|6-1005.png
10|no guidance||1006|1|Euler|Automatic|1|64x64|7-1006.png
11|broken line|||||||
12|a house, at night||1008|1|Euler|Automatic|3.5|64x64|8-1008.png
13|ddpm sampler||1009|1|DDPM|Automatic|7.5|64x64|9-1009.png
14|fixed seed||7|1|Euler|Automatic|7.5|64x64|10-7.png
16|item twelve||1011|1|Euler|Automatic|7.5|64x64|11-1011.png
17|item thirteen||1012|1|Euler|Automatic|7.5|64x56|12-1012.png
18|item fourteen||1013|1|Euler|Automatic|7.5|64x64|13-1013.png
19|item fifteen||1014|1|Euler|Automatic|7.5|64x64|14-1014.png
20|typo key|||||||
21|custom output||1016|1|Euler|Automatic|7.5|64x64|custom-1016.png
22|item eighteen|ugly|1017|1|Euler|Automatic|7.5|64x64|16-1017.png
23|item nineteen||18446744073709551615|1|Euler|Automatic|7.5|64x64|17-18446744073709551615.png
24|item twenty||1019|1|Euler a|Karras|7.5|64x64|18-1019.png
EOF
)
check "batch file: 20 items" "$(grep -c '^{' "$B")" 20
"$SDGEN" "${RUN[@]}" --prompts "$B" -o "$OUT/{index}-{seed}.png" >"$TMP/jsonl.out" 2>"$TMP/jsonl.err"
rc=$?
no_crash jsonl $rc "$TMP/jsonl.err"
check "jsonl: exit code 1 (some items failed)" "$rc" 1
check "jsonl: exactly 18 PNGs" "$(find "$OUT" -type f -name '*.png' | wc -l)" 18
check "jsonl: nothing else in the output folder" "$(find "$OUT" -type f ! -name '*.png' | wc -l)" 0
check "jsonl: two FILE:LINE errors" "$(grep -cE "batch\.jsonl:[0-9]+: " "$TMP/jsonl.err")" 2
grep -qE "^sdgen: $B:11: .*(column|expected|JSON|value)" "$TMP/jsonl.err" && ok "jsonl: error names line 11 (bad JSON)" ||
  bad "jsonl: no error for line 11: $(grep batch.jsonl "$TMP/jsonl.err")"
grep -qE "^sdgen: $B:20: .*\"stepz\"" "$TMP/jsonl.err" && ok "jsonl: error names line 20 (unknown key \"stepz\")" ||
  bad "jsonl: no error for line 20: $(grep batch.jsonl "$TMP/jsonl.err")"
grep -q "18 images written, 0 skipped, 2 failed" "$TMP/jsonl.err" && ok "jsonl: summary line" ||
  bad "jsonl: no summary: $(tail -n 2 "$TMP/jsonl.err")"
while IFS='|' read -r line prompt neg seed steps sampler sched cfg size file; do
  [ -n "$file" ] || continue
  check_png "jsonl line $line" "$OUT/$file" "$prompt" "$neg" "$steps" "$sampler" "$sched" "$cfg" "$seed" "$size"
done <<<"$EXPECT"

# ================= 2. plain-text batch =================
OUT=$TMP/plain
mkdir -p "$OUT"
P=$TMP/prompts.txt
printf '%s\n' '# one prompt per line' 'a lighthouse at dusk' '' 'a (red:1.2) boat' '   # indented comment' \
  'a/b: c?' >"$P"
"$SDGEN" "${RUN[@]}" --cfg-scale 1 --prompts "$P" -o "$OUT/p-{index}-{prompt}.png" >"$TMP/plain.out" 2>"$TMP/plain.err"
rc=$?
no_crash plain $rc "$TMP/plain.err"
check "plain: exit code 0" "$rc" 0
check "plain: 3 PNGs" "$(find "$OUT" -type f | wc -l)" 3
check_png "plain line 2" "$OUT/p-1-a_lighthouse_at_dusk.png" "a lighthouse at dusk" "" 1 Euler Automatic 1 1000 64x64
check_png "plain line 4" "$OUT/p-2-a_(red_1.2)_boat.png" "a (red:1.2) boat" "" 1 Euler Automatic 1 1001 64x64
check_png "plain line 6" "$OUT/p-3-a_b_c.png" "a/b: c?" "" 1 Euler Automatic 1 1002 64x64

# ================= 3. --batch-count and templates =================
OUT=$TMP/count
mkdir -p "$OUT"
"$SDGEN" "${RUN[@]}" --cfg-scale 1 -p "a cat" -n "dogs" --batch-count 3 --seed 100 \
  -o "$OUT/bc-{index}-{seed}-{prompt}.png" >"$TMP/count.out" 2>"$TMP/count.err"
rc=$?
no_crash count $rc "$TMP/count.err"
check "batch-count: exit code 0" "$rc" 0
check "batch-count: 3 PNGs" "$(find "$OUT" -type f | wc -l)" 3
for i in 1 2 3; do
  check_png "batch-count image $i" "$OUT/bc-$i-$((99 + i))-a_cat.png" "a cat" dogs 1 Euler Automatic 1 $((99 + i)) 64x64
done
# a fixed name for several images is numbered name-{index}.png
"$SDGEN" "${RUN[@]}" --cfg-scale 1 -p "fixed" --batch-count 2 --seed 5 -o "$OUT/fixed.png" >"$TMP/fixed.out" 2>"$TMP/fixed.err"
rc=$?
no_crash fixed $rc "$TMP/fixed.err"
check "fixed name: exit code 0" "$rc" 0
check_png "fixed name image 1" "$OUT/fixed-1.png" fixed "" 1 Euler Automatic 1 5 64x64
check_png "fixed name image 2" "$OUT/fixed-2.png" fixed "" 1 Euler Automatic 1 6 64x64
check "fixed name: no fixed.png" "$(test -e "$OUT/fixed.png" && echo yes || echo no)" no
check "no temporary files anywhere" "$(find "$TMP" -name '*.tmp*' | wc -l)" 0

# ================= 4. "preset" on a line =================
# The line's preset fills what neither the line nor the command line sets, exactly as --preset does: the
# turbo line gives the same PNG, bytes and infotext, as `--preset turbo`; a key on the line and an option
# on the command line win over it; "none" runs the line without the command line's preset; an unknown
# name fails that line alone, naming FILE:LINE and the key.
OUT=$TMP/preset
mkdir -p "$OUT"
PR=(-m "$MODEL" --vocab "$VOCAB" -W 64 -H 64)
"$SDGEN" "${PR[@]}" -p "a lighthouse" --seed 7 --preset turbo -o "$OUT/cli-turbo.png" >"$TMP/pc.out" 2>"$TMP/pc.err"
check "preset: --preset turbo run: exit 0" $? 0
"$SDGEN" "${PR[@]}" -p "a lighthouse" --seed 7 --preset lcm -o "$OUT/cli-lcm.png" >"$TMP/pc2.out" 2>"$TMP/pc2.err"
check "preset: --preset lcm run: exit 0" $? 0
PB=$TMP/preset.jsonl
cat >"$PB" <<'EOF2'
{"prompt": "a lighthouse", "seed": 7, "preset": "turbo", "output": "turbo.png"}
{"prompt": "a lighthouse", "seed": 7, "preset": "lightning", "steps": 2, "output": "lightning.png"}
{"prompt": "a lighthouse", "seed": 7, "preset": "fast", "output": "fast.png"}
{"prompt": "a lighthouse", "seed": 7, "preset": "lcm", "sampler": "euler", "output": "lcm-euler.png"}
{"prompt": "a lighthouse", "seed": 7, "preset": "none", "steps": 2, "output": "none.png"}
{"prompt": "a lighthouse", "seed": 7, "output": "plain.png"}
EOF2
(cd "$OUT" && "$SDGEN" "${PR[@]}" --preset lcm --cfg-scale 2 --prompts "$PB") >"$TMP/pb.out" 2>"$TMP/pb.err"
rc=$?
no_crash "preset batch" $rc "$TMP/pb.err"
check "preset batch: exit 1 (one line failed)" "$rc" 1
check "preset batch: 5 PNGs (and the two CLI runs)" "$(find "$OUT" -name '*.png' | wc -l)" 7
if grep -qF "$PB:3: \"preset\": unknown preset \"fast\" (turbo, lcm, lightning, none)" "$TMP/pb.err"; then
  ok "preset batch: line 3's error names FILE:LINE, the key and the names"
else bad "preset batch: no FILE:3 preset error in: $(cat "$TMP/pb.err")"; fi
check "preset batch: no fast.png" "$(test -e "$OUT/fast.png" && echo yes || echo no)" no
# --cfg-scale 2 on the command line wins over every preset; with it the turbo line equals --preset turbo --cfg-scale 2
"$SDGEN" "${PR[@]}" -p "a lighthouse" --seed 7 --preset turbo --cfg-scale 2 -o "$OUT/cli-turbo-cfg2.png" \
  >"$TMP/pc3.out" 2>"$TMP/pc3.err"
if cmp -s "$OUT/turbo.png" "$OUT/cli-turbo-cfg2.png"; then ok "preset batch: the turbo line = --preset turbo --cfg-scale 2, byte for byte"
else bad "preset batch: turbo.png differs from --preset turbo --cfg-scale 2"; fi
check_png "preset batch: turbo line" "$OUT/turbo.png" "a lighthouse" "" 1 "Euler a" Automatic 2 7 64x64
check_png "preset batch: lightning line, its steps win" "$OUT/lightning.png" "a lighthouse" "" 2 Euler Automatic 2 7 64x64
check_png "preset batch: lcm line, its sampler wins" "$OUT/lcm-euler.png" "a lighthouse" "" 4 Euler Automatic 2 7 64x64
check_png "preset batch: none line, no preset" "$OUT/none.png" "a lighthouse" "" 2 "Euler a" Automatic 2 7 64x64
check_png "preset batch: line without a preset keeps --preset lcm" "$OUT/plain.png" "a lighthouse" "" 4 LCM Automatic 2 7 64x64
# without the command line's --cfg-scale, the turbo line is exactly --preset turbo
printf '%s\n' '{"prompt": "a lighthouse", "seed": 7, "preset": "turbo", "output": "turbo2.png"}' >"$TMP/preset2.jsonl"
(cd "$OUT" && "$SDGEN" "${PR[@]}" --prompts "$TMP/preset2.jsonl") >"$TMP/pb2.out" 2>"$TMP/pb2.err"
check "preset batch 2: exit 0" $? 0
if cmp -s "$OUT/turbo2.png" "$OUT/cli-turbo.png"; then ok "preset batch 2: the turbo line = --preset turbo, byte for byte"
else bad "preset batch 2: turbo2.png differs from --preset turbo"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
