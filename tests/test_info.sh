#!/usr/bin/env bash
# test_info.sh — `sdgen info` (text and --json) on the golden tiny models, and exit code 2 with one
# line naming the file and the fault for malformed files. The JSON is checked with grep -o only
# (no jq / python needed): each component object ("unet":{...}, "vae":{...}, "text":{...}) has no
# nested braces, so it is cut out first and its keys read from it.
# Environment (tests/CMakeLists.txt): SDGEN (binary), SDGEN_SHARED (reference data), SDGEN_TEST_TMP.
set -u
SDGEN="${SDGEN:?SDGEN must point to the sdgen binary}"
SHARED="${SDGEN_SHARED:-../shared}"
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
TMP="${SDGEN_TEST_TMP:-/tmp/sdgen-test}/info"
mkdir -p "$TMP"
M="$SHARED/golden/models"
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check DESCRIPTION COMMAND...
    local what="$1"
    shift
    if "$@"; then ok; else bad "$what"; fi
}

# obj JSON NAME FIRSTKEY: the component object "NAME":{"FIRSTKEY"...} (flat, no nested braces)
obj() { grep -o "\"$2\":{\"$3\"[^}]*}" <<<"$1" | head -1; }
# val OBJ KEY: the raw value of "KEY": (a number, a quoted string, true/false, or an [array])
val() { grep -o "\"$2\":\(\[[^]]*\]\|\"[^\"]*\"\|[^,}]*\)" <<<"$1" | head -1 | sed "s/^\"$2\"://"; }
expect() { # expect LABEL OBJ KEY WANT
    local got
    got="$(val "$2" "$3")"
    if [ "$got" = "$4" ]; then ok; else bad "$1: $3 = '$got', want '$4'"; fi
}

info_json() { # info_json MODEL -> stdout JSON; fails the test if exit code != 0
    local out rc
    out="$("$SDGEN" info --json "$1" 2>"$TMP/stderr")"
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "sdgen info --json $1: exit $rc: $(cat "$TMP/stderr")"
        return 1
    fi
    if [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ]; then bad "--json output is not one line"; fi
    printf '%s' "$out"
}

# ---------------------------------------------------------------- tiny-sd1 (docs/SEMANTICS.md §14.1)
j="$(info_json "$M/tiny-sd1.safetensors")"
expect sd1 "$j" family '"sd1"'
expect sd1 "$j" prediction '"eps"'
expect sd1 "$j" format '"ldm-single-file"'
expect sd1 "$j" supported 'true'
expect sd1 "$j" components '["unet","vae_decoder","vae_encoder","text_encoder"]'
expect sd1 "$j" tensors 533
u="$(obj "$j" unet in_channels)"
expect sd1.unet "$u" model_channels 32
expect sd1.unet "$u" channel_mult '[1,2]'
expect sd1.unet "$u" num_res_blocks 2
expect sd1.unet "$u" attention_levels '[1,0]'
expect sd1.unet "$u" middle_attention true
expect sd1.unet "$u" num_heads 8
expect sd1.unet "$u" context_dim 64
expect sd1.unet "$u" proj '"conv1x1"'
expect sd1.unet "$u" time_embed_dim 128
check "sd1.unet has no head_dim" test -z "$(val "$u" head_dim)"
v="$(obj "$j" vae ch)"
expect sd1.vae "$v" ch 32
expect sd1.vae "$v" ch_mult '[1,2,2,2]'
expect sd1.vae "$v" num_res_blocks 1
expect sd1.vae "$v" z_channels 4
t="$(obj "$j" text kind)"
expect sd1.text "$t" kind '"clip"'
expect sd1.text "$t" width 64
expect sd1.text "$t" layers 2
expect sd1.text "$t" layers_used 2
expect sd1.text "$t" heads 1
expect sd1.text "$t" mlp 256
expect sd1.text "$t" activation '"quick_gelu"'
expect sd1.text "$t" pad_id 49407
p="$(grep -o '"parameters":{[^}]*}' <<<"$j")"
expect sd1.parameters "$p" other 12000
m="$(grep -o '"metadata":{[^}]*}' <<<"$j")"
expect sd1.metadata "$m" format '"pt"'

# text form: the same facts, for people
txt="$("$SDGEN" info "$M/tiny-sd1.safetensors" 2>&1)"
check "text exit code" test $? -eq 0
check "text family line" grep -q '^family: *sd1$' <<<"$txt"
check "text prediction line" grep -q '^prediction: *eps' <<<"$txt"
check "text unet line" grep -q '^unet: *32 channels × (1, 2), 2 res blocks per level, attention at levels 0 + middle, depth 1 1, 8 heads, context 64' <<<"$txt"
check "text vae line" grep -q '^vae: *32 channels × (1, 2, 2, 2), 1 res blocks per encoder level, 4 latent channels' <<<"$txt"
check "text text line" grep -q '^text: *CLIP, width 64, 2 layers (2 used, final norm), 1 heads, MLP 256, quick_gelu' <<<"$txt"
# -m form
check "info -m" grep -q '"family":"sd1"' <<<"$("$SDGEN" info -m "$M/tiny-sd1.safetensors" --json 2>/dev/null)"

# ---------------------------------------------------------------- tiny-sd2 (docs/SEMANTICS.md §14.1)
j="$(info_json "$M/tiny-sd2.safetensors")"
expect sd2 "$j" family '"sd2"'
expect sd2 "$j" prediction '"v"'
expect sd2 "$j" tensors 538
u="$(obj "$j" unet in_channels)"
expect sd2.unet "$u" model_channels 64
expect sd2.unet "$u" channel_mult '[1,2]'
expect sd2.unet "$u" attention_levels '[1,0]'
expect sd2.unet "$u" head_dim 64
expect sd2.unet "$u" context_dim 128
expect sd2.unet "$u" proj '"linear"'
expect sd2.unet "$u" time_embed_dim 256
check "sd2.unet has no num_heads" test -z "$(val "$u" num_heads)"
t="$(obj "$j" text kind)"
expect sd2.text "$t" kind '"openclip"'
expect sd2.text "$t" width 128
expect sd2.text "$t" layers 3
expect sd2.text "$t" layers_used 2
expect sd2.text "$t" heads 2
expect sd2.text "$t" activation '"gelu"'
expect sd2.text "$t" pad_id 0
d="$(grep -o '"dtypes":{.*},"tensors"' <<<"$j")"
check "sd2 dtypes all F16" test "$(grep -o 'F32\|BF16\|I64' <<<"$d" | wc -l)" -eq 0

# ---------------------------------------------------------------- tiny-cfg (docs/SEMANTICS.md §14.1)
j="$(info_json "$M/tiny-cfg")"
expect cfg "$j" family '"sd1"'
expect cfg "$j" prediction '"eps"'
expect cfg "$j" format '"diffusers"'
expect cfg "$j" tensors 632
u="$(obj "$j" unet in_channels)"
expect cfg.unet "$u" model_channels 32
expect cfg.unet "$u" channel_mult '[1,2]'
expect cfg.unet "$u" num_res_blocks 2
expect cfg.unet "$u" attention_levels '[1,0]'
expect cfg.unet "$u" num_heads 8
expect cfg.unet "$u" context_dim 32
expect cfg.unet "$u" proj '"conv1x1"'
v="$(obj "$j" vae ch)"
expect cfg.vae "$v" ch_mult '[1,2,2,2]'
expect cfg.vae "$v" num_res_blocks 2
t="$(obj "$j" text kind)"
expect cfg.text "$t" width 32
expect cfg.text "$t" layers 5
expect cfg.text "$t" heads 4
expect cfg.text "$t" mlp 37
p="$(grep -o '"parameters":{[^}]*}' <<<"$j")"
expect cfg.parameters "$p" unet 1106212
expect cfg.parameters "$p" vae 1732679
expect cfg.parameters "$p" text 1617529

# ---------------------------------------------------------------- SDXL: the tiny SDXL model (golden README §6.2)
sx="$M/tiny-sdxl.safetensors"
j="$("$SDGEN" info --json "$sx" 2>&1)"
expect sdxl "$j" family '"sdxl"'
expect sdxl "$j" supported 'true'
u="$(grep -o '"unet":{[^}]*}' <<<"$j")"
expect sdxl.unet "$u" transformer_depth_per_level '[0,1,2,2]'
expect sdxl.unet "$u" adm_in 288
expect sdxl.unet "$u" context_dim 192
expect sdxl.unet "$u" head_dim 64
t1="$(grep -o '"text":{[^}]*}' <<<"$j")"
expect sdxl.text "$t1" width 64
expect sdxl.text "$t1" layers_used 2
expect sdxl.text "$t1" pad_id 49407
expect sdxl.text "$t1" final_norm 'false'
t2="$(grep -o '"text_2":{[^}]*}' <<<"$j")"
expect sdxl.text_2 "$t2" kind '"openclip"'
expect sdxl.text_2 "$t2" width 128
expect sdxl.text_2 "$t2" projection_dim 96
expect sdxl.text_2 "$t2" pad_id 0
v="$(grep -o '"vae":{[^}]*}' <<<"$j")"
expect sdxl.vae "$v" scale_factor 0.13025000691413879
check "sdxl text form lists the second encoder" grep -q '^text 2: *OpenCLIP, width 128' <<<"$("$SDGEN" info "$sx" 2>&1)"

# ---------------------------------------------------------------- faults: exit 2, one line naming file + fault
refuse() { # refuse LABEL PATH FAULT
    local out err rc
    out="$("$SDGEN" info "$2" 2>"$TMP/err")"
    rc=$?
    err="$(cat "$TMP/err")"
    if [ $rc -ne 2 ]; then bad "$1: exit code $rc, want 2 ($err)"; return; fi
    if [ -n "$out" ]; then bad "$1: printed to stdout: $out"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then bad "$1: message is not one line: $err"; return; fi
    if ! grep -qF -- "$2" <<<"$err"; then bad "$1: message does not name the file: $err"; return; fi
    if ! grep -qF -- "$3" <<<"$err"; then bad "$1: message lacks '$3': $err"; return; fi
    ok
    echo "ok   $1: $err"
}
# st FILE HEADER [DATA_BYTES]: a safetensors file with a space-padded header and zero data bytes
st() {
    local LC_ALL=C   # ${#h} counts bytes
    local h="$2" n=${3:-0}
    while [ $(( ${#h} % 8 )) -ne 0 ]; do h="$h "; done
    local len=${#h}
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((len & 255)) $(((len >> 8) & 255)) $(((len >> 16) & 255)) $(((len >> 24) & 255)))" >"$1"
    printf '%s' "$h" >>"$1"
    [ "$n" -gt 0 ] && head -c "$n" /dev/zero >>"$1"
    return 0
}
printf 'abc' >"$TMP/short.safetensors"
refuse "truncated file" "$TMP/short.safetensors" "truncated file"
: >"$TMP/empty.safetensors"
refuse "empty file" "$TMP/empty.safetensors" "truncated file"
printf '\x00\x00\x01\x00\x00\x00\x00\x00{}      ' >"$TMP/past_eof.safetensors"
refuse "header length past EOF" "$TMP/past_eof.safetensors" "past the end of the file"
printf '\x00\x00\x00\x00\x00\x00\x00\x01{}      ' >"$TMP/huge.safetensors"
refuse "absurd header length" "$TMP/huge.safetensors" "absurdly large"
st "$TMP/badjson.safetensors" '{"a":{"dtype":"F32"'
refuse "invalid JSON" "$TMP/badjson.safetensors" "not valid JSON"
st "$TMP/array.safetensors" '["a"]'
refuse "JSON not an object" "$TMP/array.safetensors" "not a JSON object"
st "$TMP/dtype.safetensors" '{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}' 1
refuse "unknown dtype" "$TMP/dtype.safetensors" 'unknown dtype "Q4"'
st "$TMP/outside.safetensors" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
refuse "offsets outside the data" "$TMP/outside.safetensors" "outside the data area"
st "$TMP/overlap.safetensors" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' 12
refuse "overlapping offsets" "$TMP/overlap.safetensors" "overlap"
st "$TMP/span.safetensors" '{"a":{"dtype":"F16","shape":[5],"data_offsets":[0,8]}}' 8
refuse "shape x dtype != span" "$TMP/span.safetensors" "needs 10 bytes but data_offsets span 8"
st "$TMP/meta.safetensors" '{"__metadata__":{"k":["v"]}}'
refuse "__metadata__ not a string map" "$TMP/meta.safetensors" "__metadata__"
st "$TMP/shape.safetensors" '{"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}}' 4
refuse "negative shape dim" "$TMP/shape.safetensors" "bad shape dimension"
st "$TMP/notsd.safetensors" '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}' 4
refuse "no SD tensors" "$TMP/notsd.safetensors" "not a Stable Diffusion checkpoint"
# two "__metadata__" objects (the second used to index past the first's arrays: a crash)
st "$TMP/meta_twice.safetensors" '{"__metadata__":{"a":"1","b":"2","c":"3"},"__metadata__":{}}'
refuse "__metadata__ twice" "$TMP/meta_twice.safetensors" "__metadata__"
# a control character in a tensor name must not break the one-line message (or reach the terminal)
st "$TMP/ctrl_name.safetensors" '{"a\nb\u001b[2J":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}' 1
refuse "control character in a name" "$TMP/ctrl_name.safetensors" "control character"
# metadata values are the file's text: the text form escapes control characters (no terminal escapes, no
# forged report lines) and cuts long values at 200 bytes on a UTF-8 boundary
long="$(printf 'é%.0s' $(seq 150))"
# (the tiny SD 1.x model with its metadata replaced: info describes only models that open)
f="$M/tiny-sd1.safetensors"
hl=$(od -An -tu8 -N8 "$f" | tr -d ' ')
hdr="$(tail -c +9 "$f" | head -c "$hl")"
old_meta='"__metadata__":{"format":"pt"}'
new_meta='"__metadata__":{"note":"a\nforged: line\u001b[2J\tz","long":"'"$long"'"}'
st "$TMP/ctrl_meta.safetensors" "${hdr/"$old_meta"/$new_meta}" 0
tail -c +$((9 + hl)) "$f" >>"$TMP/ctrl_meta.safetensors"
txt="$("$SDGEN" info "$TMP/ctrl_meta.safetensors" 2>&1)"
check "metadata control characters escaped" grep -qF '  note: a\nforged: line\x1b[2J\tz' <<<"$txt"
check "no raw escape byte in the report" test "$(printf '%s' "$txt" | tr -d -c '\033\t' | wc -c)" -eq 0
check "no forged line" test "$(grep -c '^forged' <<<"$txt")" -eq 0
check "long value cut at a character boundary" grep -qF "  long: $(printf 'é%.0s' $(seq 100))…" <<<"$txt"
mkdir -p "$TMP/plain_dir"
refuse "directory, not diffusers" "$TMP/plain_dir" "not a diffusers folder"
refuse "missing file" "$TMP/does-not-exist.safetensors" "cannot open"
# usage errors
"$SDGEN" info >/dev/null 2>&1
check "no model: exit 2" test $? -eq 2
"$SDGEN" info --bogus "$M/tiny-sd1.safetensors" >/dev/null 2>&1
check "unknown option: exit 2" test $? -eq 2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
