#!/usr/bin/env bash
# test_info_full.sh — `sdgen info --json` on the full-size random SD 1.5 and SD 2.1 (768-v) checkpoints
# of the golden data (docs/SEMANTICS.md §14.1; label "full": 2.1 + 2.6 GB, generated on first use).
#
# Checkpoints: $SDGEN_SD15 / $SDGEN_SD21 when set; else $SDGEN_TEST_TMP/full/{sd15,sd21}.safetensors,
# made by scripts/make-full-ckpts.sh (kept when already there with the right size), or, if that
# script is absent, by building ../shared/tools/mkckpt.c and running `mkckpt MANIFEST OUT 0`.
# Expected values: the SD 1.5 / SD 2.1 architectures (CompVis v1-inference.yaml, Stability
# v2-inference-v.yaml) and parameter counts summed from golden/manifests/sd15.json / sd21.json.
set -u
SDGEN="${SDGEN:?SDGEN must point to the sdgen binary}"
SHARED="${SDGEN_SHARED:-../shared}"
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
SRC="${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
FULL="${SDGEN_TEST_TMP:-/tmp/sdgen-test}/full"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

declare -A SIZE=([sd15]=2132674926 [sd21]=2607408968)

# ckpt NAME -> path on stdout, or empty on failure
ckpt() {
    local name="$1" env f
    env="SDGEN_$(tr a-z A-Z <<<"$name")"
    if [ -n "${!env:-}" ]; then
        [ -f "${!env}" ] && echo "${!env}"
        return
    fi
    f="$FULL/$name.safetensors"
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" = "${SIZE[$name]}" ]; then
        echo "$f"
        return
    fi
    mkdir -p "$FULL"
    if [ -f "$SRC/scripts/make-full-ckpts.sh" ]; then
        SDGEN_SHARED="$SHARED" bash "$SRC/scripts/make-full-ckpts.sh" "$FULL" "$name" >&2 || return
    else
        if [ ! -x "$FULL/mkckpt" ]; then
            cc -O2 -o "$FULL/mkckpt.tmp.$$" "$SHARED/tools/mkckpt.c" -lcjson -lm && mv "$FULL/mkckpt.tmp.$$" "$FULL/mkckpt" || return
        fi
        "$FULL/mkckpt" "$SHARED/golden/manifests/$name.json" "$f.tmp.$$" 0 >&2 && mv "$f.tmp.$$" "$f" || {
            rm -f "$f.tmp.$$"
            return
        }
    fi
    [ -f "$f" ] && [ "$(stat -c %s "$f")" = "${SIZE[$name]}" ] && echo "$f"
}

obj() { grep -o "\"$2\":{\"$3\"[^}]*}" <<<"$1" | head -1; }
val() { grep -o "\"$2\":\(\[[^]]*\]\|\"[^\"]*\"\|[^,}]*\)" <<<"$1" | head -1 | sed "s/^\"$2\"://"; }
expect() { # expect LABEL OBJ KEY WANT
    local got
    got="$(val "$2" "$3")"
    if [ "$got" = "$4" ]; then ok; else bad "$1: $3 = '$got', want '$4'"; fi
}

info() { # info PATH -> JSON
    local out rc t0 t1
    t0=$(date +%s.%N)
    out="$("$SDGEN" info --json "$1" 2>&1)"
    rc=$?
    t1=$(date +%s.%N)
    if [ $rc -ne 0 ]; then bad "sdgen info --json $1: exit $rc: $out"; return 1; fi
    echo "info $(basename "$1"): $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s" >&2
    printf '%s' "$out"
}

# ---------------------------------------------------------------- SD 1.5
f="$(ckpt sd15)"
if [ -z "$f" ]; then
    bad "no SD 1.5 checkpoint"
else
    j="$(info "$f")"
    expect sd15 "$j" family '"sd1"'
    expect sd15 "$j" prediction '"eps"'
    expect sd15 "$j" tensors 1143
    u="$(obj "$j" unet in_channels)"
    expect sd15.unet "$u" in_channels 4
    expect sd15.unet "$u" out_channels 4
    expect sd15.unet "$u" model_channels 320
    expect sd15.unet "$u" channel_mult '[1,2,4,4]'
    expect sd15.unet "$u" num_res_blocks 2
    expect sd15.unet "$u" attention_levels '[1,1,1,0]'
    expect sd15.unet "$u" middle_attention true
    expect sd15.unet "$u" transformer_depth 1
    expect sd15.unet "$u" context_dim 768
    expect sd15.unet "$u" num_heads 8
    expect sd15.unet "$u" proj '"conv1x1"'
    expect sd15.unet "$u" time_embed_dim 1280
    v="$(obj "$j" vae ch)"
    expect sd15.vae "$v" ch 128
    expect sd15.vae "$v" ch_mult '[1,2,4,4]'
    expect sd15.vae "$v" num_res_blocks 2
    expect sd15.vae "$v" z_channels 4
    t="$(obj "$j" text kind)"
    expect sd15.text "$t" kind '"clip"'
    expect sd15.text "$t" width 768
    expect sd15.text "$t" layers 12
    expect sd15.text "$t" layers_used 12
    expect sd15.text "$t" heads 12
    expect sd15.text "$t" mlp 3072
    expect sd15.text "$t" vocab 49408
    expect sd15.text "$t" positions 77
    expect sd15.text "$t" activation '"quick_gelu"'
    expect sd15.text "$t" pad_id 49407
    p="$(grep -o '"parameters":{[^}]*}' <<<"$j")"
    expect sd15.parameters "$p" unet 859520964
    expect sd15.parameters "$p" vae 83653863
    expect sd15.parameters "$p" text 123060557 # 123,060,480 weights + the 77 position_ids
    expect sd15.parameters "$p" other 12000
fi

# ---------------------------------------------------------------- SD 2.1 768-v
f="$(ckpt sd21)"
if [ -z "$f" ]; then
    bad "no SD 2.1 checkpoint"
else
    j="$(info "$f")"
    expect sd21 "$j" family '"sd2"'
    expect sd21 "$j" prediction '"v"'
    expect sd21 "$j" tensors 1240
    u="$(obj "$j" unet in_channels)"
    expect sd21.unet "$u" model_channels 320
    expect sd21.unet "$u" channel_mult '[1,2,4,4]'
    expect sd21.unet "$u" num_res_blocks 2
    expect sd21.unet "$u" attention_levels '[1,1,1,0]'
    expect sd21.unet "$u" middle_attention true
    expect sd21.unet "$u" context_dim 1024
    expect sd21.unet "$u" head_dim 64
    expect sd21.unet "$u" proj '"linear"'
    expect sd21.unet "$u" time_embed_dim 1280
    v="$(obj "$j" vae ch)"
    expect sd21.vae "$v" ch 128
    expect sd21.vae "$v" ch_mult '[1,2,4,4]'
    expect sd21.vae "$v" num_res_blocks 2
    t="$(obj "$j" text kind)"
    expect sd21.text "$t" kind '"openclip"'
    expect sd21.text "$t" width 1024
    expect sd21.text "$t" layers 24
    expect sd21.text "$t" layers_used 23
    expect sd21.text "$t" heads 16
    expect sd21.text "$t" mlp 4096
    expect sd21.text "$t" activation '"gelu"'
    expect sd21.text "$t" pad_id 0
    p="$(grep -o '"parameters":{[^}]*}' <<<"$j")"
    expect sd21.parameters "$p" unet 865910724
    expect sd21.parameters "$p" vae 83653863
    expect sd21.parameters "$p" text 354032641
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
