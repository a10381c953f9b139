#!/usr/bin/env bash
# test_serve_sdxl.sh — `sdgen serve` with the tiny SDXL model and the micro-conditioning fields (an sdgen
# extension under diffusers' names, docs/SERVER.md: original_size [h, w], crops_coords_top_left [top, left],
# target_size [h, w]): txt2img with them returns the PNG bytes of the CLI with --original-size WxH
# --crop-top-left T,L --target-size WxH, echoes them in "parameters", and a malformed value is a 422 whose
# message names the field.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/serve-sdxl
rm -rf "$TMP"
mkdir -p "$TMP/cache"
export XDG_CACHE_HOME=$TMP/cache # the model-hash cache of server and CLI
unset SDGEN_VOCAB SDGEN_MODEL SDGEN_API_AUTH
MODEL=$SHARED/golden/models/tiny-sdxl.safetensors
VOCAB=$SHARED/clip
# shellcheck source=serve/lib.sh
. "$SRC/tests/serve/lib.sh"

post() { # post NAME BODY: the response in $TMP/NAME.json, the status printed
  curl -s --max-time 300 -H 'Content-Type: application/json' -o "$TMP/$1.json" -w '%{http_code}' -d "$2" \
    "$SRV_URL/sdapi/v1/txt2img"
}
png_of() { sed -n 's/^{"images":\["\([^"]*\)".*/\1/p' "$TMP/$1.json" | base64 -d >"$TMP/$1.png"; }

P="a red vintage car on a country road"
BASE="\"prompt\":\"$P\",\"seed\":7,\"width\":64,\"height\":64,\"steps\":2,\"cfg_scale\":5,\"sampler_name\":\"Euler\""
if start_server sdxl -m "$MODEL" --vocab "$VOCAB"; then
  check "micro-conditioned txt2img: 200" "$(post micro "{$BASE,\"original_size\":[512,384],\"crops_coords_top_left\":[16,8],\"target_size\":[64,64]}")" 200
  png_of micro
  "$SDGEN" -q -m "$MODEL" --vocab "$VOCAB" -p "$P" --seed 7 -W 64 -H 64 --steps 2 --cfg-scale 5 --sampler euler \
    --original-size 384x512 --crop-top-left 16,8 --target-size 64x64 -o "$TMP/cli-micro.png"
  if [ -s "$TMP/cli-micro.png" ] && cmp -s "$TMP/micro.png" "$TMP/cli-micro.png"; then
    ok "serve = CLI with the micro-conditioning ($(stat -c %s "$TMP/cli-micro.png") bytes)"
  else
    bad "serve and CLI PNGs differ with the micro-conditioning"
  fi
  grep -q '"original_size":\[512,384\],"crops_coords_top_left":\[16,8\],"target_size":\[64,64\]' "$TMP/micro.json" &&
    ok "parameters echo the three fields" || bad "echo: $(grep -o '"parameters":{[^}]*' "$TMP/micro.json" | head -c 600)"

  check "plain txt2img: 200" "$(post plain "{$BASE}")" 200
  png_of plain
  "$SDGEN" -q -m "$MODEL" --vocab "$VOCAB" -p "$P" --seed 7 -W 64 -H 64 --steps 2 --cfg-scale 5 --sampler euler \
    -o "$TMP/cli-plain.png"
  if [ -s "$TMP/cli-plain.png" ] && cmp -s "$TMP/plain.png" "$TMP/cli-plain.png"; then ok "serve = CLI without"; else
    bad "serve and CLI PNGs differ without the micro-conditioning"
  fi
  if cmp -s "$TMP/plain.png" "$TMP/micro.png"; then bad "the fields changed nothing"; else ok "the fields change the image"; fi
  grep -q '"original_size"' "$TMP/plain.json" && bad "echo of fields not given" || ok "fields not given are not echoed"

  for bad_case in 'original_size|[512]|must be \[height, width\]: a list of two integers' \
    'crops_coords_top_left|[16,-8]|"crops_coords_top_left\\" must be \[top, left\]: two integers 0..16384 (item 1' \
    'target_size|"64x64"|"target_size\\" must be \[height, width\]: a list of two integers 0..16384, got a string' \
    'target_size|[64,16385]|"target_size\\" must be \[height, width\]: two integers' \
    'original_size|[64.5,64]|"original_size\\" must be \[height, width\]: two integers'; do
    IFS='|' read -r key val want <<<"$bad_case"
    code=$(post bad "{$BASE,\"$key\":$val}")
    check "$key $val: 422" "$code" 422
    grep -q -- "$want" "$TMP/bad.json" && ok "$key $val: the message names the field" || bad "$key $val: $(cat "$TMP/bad.json")"
  done
  still_serving "after the bad requests"
  stop_server sdxl
  check "SIGTERM: exit 0" "$SRV_RC" 0
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
