#!/usr/bin/env bash
# --vae-tiling through the CLI: a 576x64 image (latent 72x8: two 64-latent tiles with a 16-pixel
# blend) decodes in tiles; a 64x64 image fits in one tile and must equal the untiled decode exactly.
set -u
SH="${SDGEN_SHARED:-../shared}"
[ -d "$SH/golden" ] || { echo "SKIP: the reference data is not at $SH (set SDGEN_SHARED)"; exit 77; }
T="${SDGEN_TEST_TMP:-/tmp/sdgen-test}/vae-tiling-cli"
rm -rf "$T" && mkdir -p "$T"
pass=0 fail=0
ok() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $*" >&2; fi; }
run() { "$SDGEN" -q -m "$SH/golden/models/tiny-sd1.safetensors" --vocab "$SH/clip" -p "tiles" --steps 1 --seed 1 "$@"; }

ok run -W 576 -H 64 --vae-tiling -o "$T/tiled.png"
ok run -W 576 -H 64 -o "$T/untiled.png"
ok test -s "$T/tiled.png"
# the PNG header's width and height (bytes 16..23, big-endian)
ok test "$(od -An -tx1 -j16 -N8 "$T/tiled.png" | tr -d ' \n')" = "0000024000000040"
ok run -W 64 -H 64 --vae-tiling -o "$T/one-tile.png"
ok run -W 64 -H 64 -o "$T/plain.png"
ok cmp -s "$T/one-tile.png" "$T/plain.png"
# the tiled 576-wide image is a different decode (per-tile GroupNorm), not a copy of the untiled one
ok bash -c "! cmp -s '$T/tiled.png' '$T/untiled.png'"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
