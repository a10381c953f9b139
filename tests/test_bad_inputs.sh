#!/usr/bin/env bash
# test_bad_inputs.sh — bad input end to end: malformed model files, diffusers folders, vocabularies, batch
# files, init images and command-line options fed to `sdgen`. For every case it asserts
#   - the exit code (README "Exit codes": 2 usage/input error, 1 batch with failed items, 3 out of memory),
#   - a message on stderr naming the problem (a specific substring, on one line; at most a few lines),
#   - no crash: exit code < 128 and no AddressSanitizer / UBSan ("runtime error") / LeakSanitizer report
#     (the suite also runs with the ASan build's binary as $SDGEN),
#   - nothing left behind: no new file in the case's output folder (no PNG, no *.tmp*), and a pre-existing
#     output is byte-for-byte unchanged.
# Fixtures are generated here into $SDGEN_TEST_TMP with bash + coreutils (+ gzip for CRC-32), from the tiny
# golden checkpoint and the CLIP vocabulary; none of these cases generates an image, so the suite is fast.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
CFG="$SHARED/golden/models/tiny-cfg"
VOCAB="$SHARED/clip"
IMG="$SRC/tests/fixtures/images"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/bad-inputs
rm -rf "$TMP"
mkdir -p "$TMP/fx" "$TMP/out" "$TMP/log"
FX=$TMP/fx
unset SDGEN_VOCAB SDGEN_MODEL

pass=0
fail=0
cases=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }

# ---- fixture helpers ----
# shellcheck source=bad_inputs/fixtures.sh
. "$SRC/tests/bad_inputs/fixtures.sh"

# The tiny checkpoint split into header and data, for same-length header edits.
HLEN=$(od -An -tu8 -N8 "$MODEL" | tr -d ' ')
tail -c +9 "$MODEL" | head -c "$HLEN" >"$FX/hdr.json"
tail -c +$((9 + HLEN)) "$MODEL" >"$FX/data.bin"
DLEN=$(stat -c %s "$FX/data.bin")
# variant OUT SED_EXPR [EXTRA_BYTES]: the tiny model with its header edited by SED_EXPR and EXTRA_BYTES zero
# bytes appended to its data
variant() {
  local h
  h=$(sed "$2" "$FX/hdr.json")
  [ "$h" != "$(cat "$FX/hdr.json")" ] || bad "fixture $1: the edit '$2' did not apply"
  { le64 "${#h}"; printf '%s' "$h"; cat "$FX/data.bin"; head -c "${3:-0}" /dev/zero; } >"$1"
}

# ---- the case runner ----
# cs NAME: start a case; its output folder is $O (empty, the command's working directory)
cs() {
  CASE=$1
  O=$TMP/out/$1
  mkdir -p "$O"
  MAXL=1
}
# run ARGS...: "$SDGEN ARGS" in $O, its output in $TMP/log/$CASE.out and .err (expect, in fixtures.sh, calls it)
run() { (cd "$O" && exec "$SDGEN" "$@") >"$TMP/log/$CASE.out" 2>"$TMP/log/$CASE.err"; }

# 2 steps: image-to-image cases need int(steps * strength 0.75) >= 1, which is checked before the image is read
BASE=(--vocab "$VOCAB" -W 64 -H 64 --steps 2 --seed 1 -q)
GEN=(-m "$MODEL" "${BASE[@]}")

# ================= model files =================
cs model-missing
expect 2 "nope.safetensors: cannot open" -m "$FX/nope.safetensors" "${BASE[@]}" -p x -o out.png
cs model-empty-file
: >"$FX/empty.safetensors"
expect 2 "truncated file" -m "$FX/empty.safetensors" "${BASE[@]}" -p x -o out.png
cs model-5-bytes
printf 'abcde' >"$FX/five.safetensors"
expect 2 "truncated file" -m "$FX/five.safetensors" "${BASE[@]}" -p x -o out.png
cs model-dev-null
expect 2 "not a regular file" -m /dev/null "${BASE[@]}" -p x -o out.png
cs model-header-past-eof
{ le64 1000; printf '{}'; } >"$FX/hdr-eof.safetensors"
expect 2 "runs past the end of the file" -m "$FX/hdr-eof.safetensors" "${BASE[@]}" -p x -o out.png
cs model-header-absurd
{ le64 -1; printf '{}'; } >"$FX/hdr-huge.safetensors"
expect 2 "absurdly large" -m "$FX/hdr-huge.safetensors" "${BASE[@]}" -p x -o out.png
cs model-truncated-header
head -c 30000 "$MODEL" >"$FX/trunc-hdr.safetensors"
expect 2 "runs past the end of the file" -m "$FX/trunc-hdr.safetensors" "${BASE[@]}" -p x -o out.png
cs model-truncated-data
head -c 5000000 "$MODEL" >"$FX/trunc-data.safetensors"
expect 2 "lie outside the data area" -m "$FX/trunc-data.safetensors" "${BASE[@]}" -p x -o out.png
cs model-bad-json
mkst "$FX/badjson.safetensors" '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]' 4
expect 2 "header is not valid JSON" -m "$FX/badjson.safetensors" "${BASE[@]}" -p x -o out.png
cs model-json-array
mkst "$FX/array.safetensors" '[1,2,3]' 0
expect 2 "header is not a JSON object" -m "$FX/array.safetensors" "${BASE[@]}" -p x -o out.png
cs model-unknown-dtype
mkst "$FX/dtype.safetensors" '{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}}' 4
expect 2 'unknown dtype "Q7"' -m "$FX/dtype.safetensors" "${BASE[@]}" -p x -o out.png
cs model-overlap
mkst "$FX/overlap.safetensors" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}' 24
expect 2 "overlap in the data area" -m "$FX/overlap.safetensors" "${BASE[@]}" -p x -o out.png
cs model-offsets-outside
mkst "$FX/outside.safetensors" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
expect 2 "lie outside the data area" -m "$FX/outside.safetensors" "${BASE[@]}" -p x -o out.png
cs model-shape-vs-offsets
mkst "$FX/sizes.safetensors" '{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}' 16
expect 2 "shape needs 20 bytes but data_offsets span 16" -m "$FX/sizes.safetensors" "${BASE[@]}" -p x -o out.png
cs model-negative-dim
mkst "$FX/negdim.safetensors" '{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}' 16
expect 2 "bad shape dimension" -m "$FX/negdim.safetensors" "${BASE[@]}" -p x -o out.png
cs model-duplicate-tensor
mkst "$FX/dup.safetensors" '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8
expect 2 '"a" is listed twice' -m "$FX/dup.safetensors" "${BASE[@]}" -p x -o out.png
cs model-bad-metadata
mkst "$FX/meta.safetensors" '{"__metadata__":{"format":7},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4
expect 2 "__metadata__" -m "$FX/meta.safetensors" "${BASE[@]}" -p x -o out.png
cs model-not-sd
mkst "$FX/notsd.safetensors" '{"bert.embeddings.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' 16
expect 2 "not a Stable Diffusion checkpoint" -m "$FX/notsd.safetensors" "${BASE[@]}" -p x -o out.png
cs model-sdxl
mkst "$FX/sdxl.safetensors" '{"conditioner.embedders.1.model.ln_final.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"model.diffusion_model.label_emb.0.0.weight":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}' 32
expect 2 "sdxl.safetensors: no U-Net, VAE or text encoder found" -m "$FX/sdxl.safetensors" "${BASE[@]}" -p x -o out.png
cs model-missing-tensor
variant "$FX/missing.safetensors" 's/"first_stage_model\.quant_conv\.weight"/"first_stage_model.quant_conv.weighX"/'
expect 2 '"first_stage_model.quant_conv.weight" is missing' -m "$FX/missing.safetensors" "${BASE[@]}" -p x -o out.png
cs model-wrong-shape
variant "$FX/shape.safetensors" 's/"model\.diffusion_model\.out\.2\.weight":{"dtype":"F32","shape":\[4,32,3,3\]/"model.diffusion_model.out.2.weight":{"dtype":"F32","shape":[32,4,3,3]/'
expect 2 'tensor "model.diffusion_model.out.2.weight" has shape [32,4,3,3], expected [4,32,3,3]' -m "$FX/shape.safetensors" "${BASE[@]}" -p x -o out.png
cs model-i64-weight
# the bias becomes I64 [64] (512 bytes) stored after the last tensor; its old F32 bytes are left unused
variant "$FX/i64.safetensors" 's/"first_stage_model\.decoder\.conv_in\.bias":{"dtype":"F32","shape":\[64\],"data_offsets":\[[0-9]*,[0-9]*\]/"first_stage_model.decoder.conv_in.bias":{"dtype":"I64","shape":[64],"data_offsets":['"$DLEN,$((DLEN + 512))"']/' 512
expect 2 'has dtype I64; weights must be F32, F16 or BF16' -m "$FX/i64.safetensors" "${BASE[@]}" -p x -o out.png
cs model-unknown-dtype-in-tiny
variant "$FX/f31.safetensors" 's/"first_stage_model\.decoder\.conv_in\.bias":{"dtype":"F32"/"first_stage_model.decoder.conv_in.bias":{"dtype":"F31"/'
expect 2 'unknown dtype "F31"' -m "$FX/f31.safetensors" "${BASE[@]}" -p x -o out.png
rm -f "$FX"/missing.safetensors "$FX"/shape.safetensors "$FX"/i64.safetensors "$FX"/f31.safetensors "$FX/data.bin"

# ================= diffusers folders =================
cs folder-empty
mkdir -p "$FX/emptydir"
expect 2 "not a diffusers folder (no unet/config.json)" -m "$FX/emptydir" "${BASE[@]}" -p x -o out.png
cs folder-broken-config
linkfolder "$FX/cfg-broken"
rm "$FX/cfg-broken/unet/config.json"
printf '{"block_out_channels": [32, 64' >"$FX/cfg-broken/unet/config.json"
expect 2 "cfg-broken/unet/config.json: invalid JSON: the file ends before the JSON is complete (truncated?)" -m "$FX/cfg-broken" "${BASE[@]}" -p x -o out.png
cs folder-no-weights
linkfolder "$FX/cfg-noweights"
rm "$FX/cfg-noweights/vae/diffusion_pytorch_model.safetensors"
expect 2 "the vae config is there but its weights are not" -m "$FX/cfg-noweights" "${BASE[@]}" -p x -o out.png
cs folder-bad-weights
linkfolder "$FX/cfg-badweights"
rm "$FX/cfg-badweights/text_encoder/model.safetensors"
printf 'garbage!' >"$FX/cfg-badweights/text_encoder/model.safetensors"
expect 2 "text_encoder/model.safetensors: header length" -m "$FX/cfg-badweights" "${BASE[@]}" -p x -o out.png

# ================= vocabularies =================
cs vocab-missing
expect 2 "nope.txt.gz" -m "$MODEL" "${BASE[@]}" --vocab "$FX/nope.txt.gz" -p x -o out.png
cs vocab-empty
: >"$FX/empty-merges.txt"
expect 2 "empty-merges.txt: no merges found" "${GEN[@]}" --vocab "$FX/empty-merges.txt" -p x -o out.png
cs vocab-garbage-gz
printf '\x1f\x8b\x08\x00garbagegarbagegarbage' >"$FX/garbage.txt.gz"
expect 2 "garbage.txt.gz:" "${GEN[@]}" --vocab "$FX/garbage.txt.gz" -p x -o out.png
cs vocab-truncated-gz
head -c 30000 "$VOCAB/bpe_simple_vocab_16e6.txt.gz" >"$FX/trunc.txt.gz"
expect 2 "trunc.txt.gz: damaged or truncated" "${GEN[@]}" --vocab "$FX/trunc.txt.gz" -p x -o out.png
cs vocab-truncated-merges
mkdir -p "$FX/tm"
cp "$VOCAB/vocab.json" "$FX/tm/"
head -c 10000 "$VOCAB/merges.txt" >"$FX/tm/merges.txt"
expect 2 'merges.txt: line 1358: expected a merge "A B"' "${GEN[@]}" --vocab "$FX/tm" -p x -o out.png
cs vocab-json-without-merges
mkdir -p "$FX/vj"
cp "$VOCAB/vocab.json" "$FX/vj/"
expect 2 "merges.txt is missing" "${GEN[@]}" --vocab "$FX/vj/vocab.json" -p x -o out.png
cs vocab-folder-without-vocab
expect 2 "folder holds no CLIP vocabulary" "${GEN[@]}" --vocab "$FX/emptydir" -p x -o out.png

# ================= batch files =================
# Only malformed lines (and comments): nothing is generated, every item fails, exit 1 and FILE:LINE.
cs batch-missing
expect 2 "nope.txt" "${GEN[@]}" --prompts "$FX/nope.txt" -o 'img-{index}.png'
cs batch-empty
printf '# only a comment\n\n   \n' >"$FX/b-empty.txt"
expect 2 "no prompts in the batch file" "${GEN[@]}" --prompts "$FX/b-empty.txt" -o 'img-{index}.png'
batch_case() { # batch_case NAME CONTENT(printf format) SUBSTRING: exit 1, "FILE:LINE: SUBSTRING"
  cs "batch-$1"
  MAXL=3
  printf "$2" >"$FX/b-$1.txt"
  expect 1 "$3" "${GEN[@]}" --prompts "$FX/b-$1.txt" -o 'img-{index}.png'
  grep -q "b-$1.txt:[0-9]*:" "$TMP/log/$CASE.err" || bad "$CASE: no FILE:LINE in the message"
}
batch_case bad-json '# comment\n{"prompt": "x",\n' "b-bad-json.txt:2:"
batch_case unknown-key '{"prompt": "x", "colour": "red"}\n' "colour"
batch_case wrong-type '\n{"prompt": "x", "steps": "many"}\n' "b-wrong-type.txt:2:"
batch_case not-object '{"prompt": "x", "steps": 0}\n[1, 2]\n' "b-not-object.txt:2:"
batch_case steps-zero '{"prompt": "x", "steps": 0}\n' 'b-steps-zero.txt:1: "steps" expects an integer in [1, 1000]'
batch_case width-odd '{"prompt": "x", "width": 60}\n' 'b-width-odd.txt:1: "width" expects an integer in [8, 65536] that is a multiple of 8'
batch_case sampler '{"prompt": "x", "sampler": "bogus"}\n' 'unknown sampler "bogus"'
batch_case other-model '{"prompt": "x", "model": "other.safetensors"}\n' "a batch uses one model"
batch_case init-missing '{"prompt": "x", "init_image": "nope.png"}\n' "nope.png: cannot open"
batch_case bad-template '{"prompt": "x", "output": "{nope}.png"}\n' "{nope}"
batch_case non-utf8 'a red \xff apple\n' "b-non-utf8.txt:1: not valid UTF-8"
batch_case json-non-utf8 '{"prompt": "a \xc3\x28 b"}\n' "b-json-non-utf8.txt:1:"
cs batch-huge-line
MAXL=2
{ head -c 70000 /dev/zero | tr '\0' 'a'; printf '\n'; } >"$FX/b-huge.txt"
expect 1 "b-huge.txt:1:" "${GEN[@]}" --prompts "$FX/b-huge.txt" -o 'img-{index}.png'

# ================= init images =================
cs image-missing
expect 2 "nope.png: cannot open" "${GEN[@]}" -p x -i "$FX/nope.png" -o out.png
cs image-not-an-image
printf 'this is text, not pixels\n' >"$FX/text.png"
expect 2 "text.png: not a PNG or JPEG image" "${GEN[@]}" -p x -i "$FX/text.png" -o out.png
cs image-zero-size
: >"$FX/zero.png"
expect 2 "zero.png: not a PNG or JPEG image" "${GEN[@]}" -p x -i "$FX/zero.png" -o out.png
cs image-truncated-png
head -c 100 "$IMG/src.png" >"$FX/trunc.png"
expect 2 "trunc.png: corrupt image" "${GEN[@]}" -p x -i "$FX/trunc.png" -o out.png
cs image-truncated-jpeg
head -c 300 "$IMG/photo.jpg" >"$FX/trunc.jpg"
expect 2 "trunc.jpg: corrupt image" "${GEN[@]}" -p x -i "$FX/trunc.jpg" -o out.png
# signature + IHDR claiming W x H RGB (valid CRC) + IEND: must be refused from the header, before allocation
mkpng_header() { # mkpng_header FILE W H
  { be32 "$2"; be32 "$3"; printf '\x08\x02\x00\x00\x00'; } >"$FX/ihdr.bin"
  : >"$FX/iend.bin"
  { printf '\x89PNG\r\n\x1a\n'; png_chunk IHDR "$FX/ihdr.bin"; png_chunk IEND "$FX/iend.bin"; } >"$1"
}
cs image-huge-side
mkpng_header "$FX/wide.png" 16385 16
expect 2 "wide.png: image too large (16385x16; at most 16384 pixels per side and 64 Mpx)" "${GEN[@]}" -p x -i "$FX/wide.png" -o out.png
cs image-huge-pixels
mkpng_header "$FX/big.png" 9000 9000
expect 2 "big.png: image too large (9000x9000; at most 16384 pixels per side and 64 Mpx)" "${GEN[@]}" -p x -i "$FX/big.png" -o out.png
cs image-huge-dimensions
# 100000 x 100000: stb_image would refuse it with "too large" and then let its JPEG reader overwrite the
# reason; src/image.c reads the PNG IHDR itself first
mkpng_header "$FX/huge.png" 100000 100000
expect 2 "huge.png: image too large (100000x100000; at most 16384 pixels per side" "${GEN[@]}" -p x -i "$FX/huge.png" -o out.png
cs image-directory
expect 2 "emptydir: not a regular file" "${GEN[@]}" -p x -i "$FX/emptydir" -o out.png

# ================= command-line options =================
cs opt-steps-zero
expect 2 "--steps expects an integer in [1, " "${GEN[@]}" -p x --steps 0 -o out.png
cs opt-steps-not-number
expect 2 "--steps expects an integer" "${GEN[@]}" -p x --steps 5x -o out.png
cs opt-cfg-negative
expect 2 "--cfg-scale expects a number in [0, 100]" "${GEN[@]}" -p x --cfg-scale -1 -o out.png
cs opt-cfg-nan
expect 2 "--cfg-scale expects a number" "${GEN[@]}" -p x --cfg-scale nan -o out.png
cs opt-width-not-multiple-of-8
expect 2 '-W expects an integer in [8, 65536] that is a multiple of 8, got "60"' "${GEN[@]}" -p x -W 60 -o out.png
cs opt-height-zero
expect 2 "-H expects an integer in [8, " "${GEN[@]}" -p x -H 0 -o out.png
cs opt-width-too-large
expect 2 "width and height must be at most 8192" "${GEN[@]}" -p x -W 16384 --max-memory 1T -o out.png
cs opt-strength-above-1
expect 2 "--strength expects a number in (0, 1]" "${GEN[@]}" -p x -i "$IMG/src.png" --strength 1.5 -o out.png
cs opt-strength-negative
expect 2 "--strength expects a number in (0, 1]" "${GEN[@]}" -p x -i "$IMG/src.png" --strength -0.1 -o out.png
cs opt-unknown-sampler
expect 2 'unknown sampler "heun2"' "${GEN[@]}" -p x --sampler heun2 -o out.png
cs opt-unknown-schedule
expect 2 'unknown schedule "exponential"' "${GEN[@]}" -p x --schedule exponential -o out.png
cs opt-bad-rng
expect 2 'expected cpu or cuda, got "gpu2"' "${GEN[@]}" -p x --rng gpu2 -o out.png
cs opt-bad-prediction
expect 2 'expected eps or v, got "x0"' "${GEN[@]}" -p x --prediction x0 -o out.png
cs opt-unknown-option
expect 2 'unknown option "--frobnicate"' "${GEN[@]}" -p x --frobnicate -o out.png
cs opt-missing-value
expect 2 "-o needs a value" "${GEN[@]}" -p x -o
cs opt-seed-not-number
expect 2 '--seed expects an integer in [0, 2^64-1]' "${GEN[@]}" -p x --seed abc -o out.png
cs opt-seed-overflow
expect 2 '--seed expects an integer in [0, 2^64-1]' "${GEN[@]}" -p x --seed 18446744073709551616 -o out.png
cs opt-seed-negative
expect 2 '--seed expects an integer in [0, 2^64-1] (or -1 for random)' "${GEN[@]}" -p x --seed -5 -o out.png
cs opt-overwrite-and-skip
expect 2 "--overwrite and --skip-existing contradict each other" "${GEN[@]}" -p x --overwrite --skip-existing -o out.png
cs opt-threads-zero
expect 2 "--threads expects an integer in [1, 1024]" "${GEN[@]}" -p x --threads 0 -o out.png
cs opt-batch-count-zero
expect 2 "--batch-count expects an integer in [1, " "${GEN[@]}" -p x --batch-count 0 -o out.png
cs opt-clip-skip-too-large
expect 2 "clip skip must be between 1 and 2 for this model (got 3)" "${GEN[@]}" -p x --clip-skip 3 -o out.png
cs opt-clip-skip-zero
expect 2 "--clip-skip expects an integer in [1, 64]" "${GEN[@]}" -p x --clip-skip 0 -o out.png
cs opt-max-memory-garbage
expect 2 "--max-memory expects a size like 8G" "${GEN[@]}" -p x --max-memory lots -o out.png
cs opt-prompt-not-utf8
expect 2 "--prompt is not valid UTF-8 (byte 7)" "${GEN[@]}" -p $'a red \xff apple' -o out.png
cs opt-prompt-overlong-utf8
expect 2 "--prompt is not valid UTF-8 (byte 2)" "${GEN[@]}" -p $'a\xc0\xaf' -o out.png
cs opt-negative-prompt-not-utf8
expect 2 "--negative-prompt is not valid UTF-8" "${GEN[@]}" -p x -n $'blurry \xed\xa0\x80' -o out.png
cs opt-prompt-too-long
expect 2 "prompt too long: 40000 bytes (at most 32768)" "${GEN[@]}" -p x -n "$(head -c 40000 /dev/zero | tr '\0' a)" -o out.png
cs opt-prompt-too-many-chunks
expect 2 "prompt too long: 67 chunks of 75 tokens (at most 64)" "${GEN[@]}" -p "$(for i in $(seq 2500); do printf 'red, '; done)" -o out.png
cs opt-bad-template
expect 2 "{nope}" "${GEN[@]}" -p x -o 'img-{nope}.png'

# ================= output paths =================
cs out-empty
expect 2 "empty output path" "${GEN[@]}" -p x -o ""
cs out-trailing-slash
expect 2 "sub/: not a file name" "${GEN[@]}" -p x -o "sub/"
cs out-template-unclosed
expect 2 'output template "img-{index": unknown placeholder' "${GEN[@]}" -p x -o "img-{index"
cs out-dir-missing
expect 2 "output directory" "${GEN[@]}" -p x -o "$O/no/such/dir/out.png"
cs out-parent-is-file
printf 'i am a file' >"$O/file"
expect 2 "is not a directory" "${GEN[@]}" -p x -o "$O/file/out.png"
cs out-exists
printf 'precious' >"$O/out.png"
expect 2 "out.png: already exists (use --overwrite to replace it)" "${GEN[@]}" -p x -o out.png
cs out-is-directory
mkdir -p "$O/adir"
expect 2 "adir: is a directory, not an image file name" "${GEN[@]}" -p x -o "$O/adir" --overwrite
cs out-dump-dir-under-file
printf 'i am a file' >"$O/file"
expect 2 "cannot create directory" "${GEN[@]}" -p x -o out.png --dump-dir "$O/file/dump"
cs out-batch-dir-missing
MAXL=2
printf 'a prompt\n' >"$FX/b-ok.txt"
expect 2 "output directory" "${GEN[@]}" --prompts "$FX/b-ok.txt" -o "$O/missing/{index}.png"

# ================= out of memory (exit 3) =================
cs oom-huge-size
expect 3 "65536x65536 needs about" "${GEN[@]}" -p x -W 65536 -H 65536 -o out.png
cs oom-max-memory
expect 3 "MB of activation memory but only 1.0 MB is available" "${GEN[@]}" -p x --max-memory 1M -o out.png

cs oom-max-memory-mixed-units
expect 3 "GB of activation memory but only 512.0 MB is available" "${GEN[@]}" -p x -W 2048 -H 2048 --max-memory 512M -o out.png

echo "$cases cases: $pass passed, $fail failed"
[ "$cases" -ge 40 ] || { echo "FAIL: only $cases cases (the suite keeps at least 40)" >&2; fail=$((fail + 1)); }
[ "$fail" = 0 ]
