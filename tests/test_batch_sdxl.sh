#!/usr/bin/env bash
# test_batch_sdxl.sh — SDXL micro-conditioning from a JSON Lines batch (keys original_size [h, w],
# crops_coords_top_left [top, left], target_size [h, w], as diffusers' pipeline arguments and the golden
# case.json files name them) gives byte for byte the PNG of the command line with --original-size WxH
# --crop-top-left T,L --target-size WxH; a malformed value fails only its own item, with a message naming the
# line and the key, and the batch goes on. Tiny SDXL model, 64×64, 2 steps.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
MODEL="$SHARED/golden/models/tiny-sdxl.safetensors"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/batch-sdxl
rm -rf "$TMP"
mkdir -p "$TMP"
unset SDGEN_VOCAB SDGEN_MODEL

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2' want '$3'"; fi; }
same() { # same NAME A B: byte-identical files
  if [ -f "$2" ] && [ -f "$3" ] && cmp -s "$2" "$3"; then ok "$1"; else bad "$1: $2 and $3 differ or are missing"; fi
}

RUN=(-q -m "$MODEL" --vocab "$SHARED/clip" -W 64 -H 64 --steps 2 --sampler euler --cfg-scale 5)

"$SDGEN" "${RUN[@]}" -p "a red vintage car" --seed 7 --original-size 384x512 --crop-top-left 16,8 --target-size 64x64 \
  -o "$TMP/cli-micro.png" 2>"$TMP/cli1.err"
check "command line with micro-conditioning: exit 0" "$?" 0
"$SDGEN" "${RUN[@]}" -p "a red vintage car" --seed 7 -o "$TMP/cli-plain.png" 2>"$TMP/cli2.err"
check "command line without: exit 0" "$?" 0

B=$TMP/batch.jsonl
cat >"$B" <<EOF
{"prompt": "a red vintage car", "seed": 7, "original_size": [512, 384], "crops_coords_top_left": [16, 8], "target_size": [64, 64], "output": "$TMP/b1.png"}
{"prompt": "a red vintage car", "seed": 7, "original_size": [512], "output": "$TMP/b2.png"}
{"prompt": "a red vintage car", "seed": 7, "output": "$TMP/b3.png"}
{"prompt": "a red vintage car", "seed": 7, "target_size": "64x64", "output": "$TMP/b4.png"}
{"prompt": "a red vintage car", "seed": 7, "crops_coords_top_left": [16, 99999], "output": "$TMP/b5.png"}
{"prompt": "a red vintage car", "seed": 7, "original_size": [512, 384], "crops_coords_top_left": [16, 8], "target_size": null, "output": "$TMP/b6.png"}
EOF
"$SDGEN" "${RUN[@]}" --prompts "$B" -o "$TMP/unused-{index}.png" >"$TMP/batch.out" 2>"$TMP/batch.err"
rc=$?
check "batch: exit code 1 (some items failed)" "$rc" 1
same "batch original_size/crops_coords_top_left/target_size = --original-size/--crop-top-left/--target-size" \
  "$TMP/cli-micro.png" "$TMP/b1.png"
same "batch without the keys = the command line without the options" "$TMP/cli-plain.png" "$TMP/b3.png"
# target_size null = not given = the image size, which p1's target 64x64 equals
same "target_size null = the default" "$TMP/cli-micro.png" "$TMP/b6.png"
if cmp -s "$TMP/b1.png" "$TMP/b3.png"; then bad "micro-conditioning changed nothing (b1 = b3)"; else ok "micro-conditioning changes the image"; fi
for k in 2 4 5; do
  [ -e "$TMP/b$k.png" ] && bad "item $k failed but wrote b$k.png" || ok "item $k: no output"
done
grep -q "$B:2: \"original_size\" must be \[height, width\]" "$TMP/batch.err" && ok "line 2 error names original_size" ||
  bad "line 2: $(cat "$TMP/batch.err")"
grep -q "$B:4: \"target_size\" must be \[height, width\]" "$TMP/batch.err" && ok "line 4 error names target_size" ||
  bad "line 4: $(cat "$TMP/batch.err")"
grep -q "$B:5: \"crops_coords_top_left\": 99999 is outside 0..16384" "$TMP/batch.err" && ok "line 5 error names crops_coords_top_left" ||
  bad "line 5: $(cat "$TMP/batch.err")"
grep -q "3 images written, 0 skipped, 3 failed" "$TMP/batch.err" && ok "batch summary" || bad "summary: $(tail -n 2 "$TMP/batch.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
