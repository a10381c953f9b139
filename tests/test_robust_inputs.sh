#!/usr/bin/env bash
# test_robust_inputs.sh — the loader and pipeline classes of the second hostile-input round
# (docs/RELIABILITY.md "Robustness, round 2: loader and pipeline"): timesteps past the noise schedule,
# NaN/Inf anywhere, safetensors header padding, address-space limits, FIFOs and devices where a file
# belongs, a model file changed while in use, and messages that named the wrong problem.
# Every refusal asserts, as tests/test_bad_inputs.sh does: the exit code, a message substring on at
# most MAXL stderr lines, no crash (exit < 128, so a hang killed by `timeout` fails too) and no
# sanitizer report, and an output folder left unchanged. Every run that should work asserts exit 0 and
# a complete PNG. Fixtures are made here with bash + coreutils from the tiny golden models.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
MODEL2="$SHARED/golden/models/tiny-sd2.safetensors"
CFG="$SHARED/golden/models/tiny-cfg"
VOCAB="$SHARED/clip"
IMG="$SRC/tests/fixtures/images"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/robust-inputs
rm -rf "$TMP"
mkdir -p "$TMP/fx" "$TMP/out" "$TMP/log"
FX=$TMP/fx
unset SDGEN_VOCAB SDGEN_MODEL
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

pass=0
fail=0
cases=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }
# Every run is bounded: a hang (the FIFO and ulimit classes) is killed and fails as a crash.
LIMIT=120

# ---- fixture helpers ----
# shellcheck source=bad_inputs/fixtures.sh
. "$SRC/tests/bad_inputs/fixtures.sh"
mkpng_header() { # mkpng_header FILE W H: signature, IHDR (RGB), IEND
  { be32 "$2"; be32 "$3"; printf '\x08\x02\x00\x00\x00'; } >"$FX/ihdr.bin"
  : >"$FX/iend.bin"
  { printf '\x89PNG\r\n\x1a\n'; png_chunk IHDR "$FX/ihdr.bin"; png_chunk IEND "$FX/iend.bin"; } >"$1"
}
# patch FILE OFFSET BYTES(printf format): overwrite bytes in place
patch() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

HLEN=$(od -An -tu8 -N8 "$MODEL" | tr -d ' ')
tail -c +9 "$MODEL" | head -c "$HLEN" >"$FX/hdr.json"
# data_offset NAME: the begin offset of a tensor in the tiny SD 1.x checkpoint's data area
data_offset() {
  grep -o "\"$1\":{[^}]*}" "$FX/hdr.json" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/'
}
# poisoned OUT TENSOR BYTES: the tiny checkpoint with the first value of TENSOR replaced
poisoned() {
  local off
  off=$(data_offset "$2")
  [ -n "$off" ] || bad "fixture $1: tensor $2 not found"
  cp "$MODEL" "$1"
  chmod u+w "$1"
  patch "$1" $((8 + HLEN + off)) "$3"
}

# ---- the case runner ----
cs() {
  CASE=$1
  O=$TMP/out/$1
  mkdir -p "$O"
  MAXL=1
  RUNENV=()
  ULIMIT_V=
}
# run ARGS...: "$SDGEN ARGS" in $O with $RUNENV and (if set) ulimit -v $ULIMIT_V, bounded by $LIMIT
run() {
  (
    cd "$O" || exit 99
    [ -z "$ULIMIT_V" ] || ulimit -v "$ULIMIT_V"
    exec env "${RUNENV[@]}" timeout -s KILL "$LIMIT" "$SDGEN" "$@"
  ) >"$TMP/log/$CASE.out" 2>"$TMP/log/$CASE.err"
}
# expect_png ARGS...: a run that works: exit 0 and out.png a complete PNG
expect_png() {
  cases=$((cases + 1))
  local err=$TMP/log/$CASE.err f=0 why
  rm -f "$O/out.png"
  run "$@" -o out.png
  local rc=$?
  [ "$rc" = 0 ] || { bad "$CASE: exit $rc, want 0"; f=1; }
  if sanitizer_report "$err"; then bad "$CASE: sanitizer report"; f=1; fi
  if ! why=$(png_valid "$O/out.png" 2>&1); then bad "$CASE: no valid out.png: $why"; f=1; fi
  if [ $f = 0 ]; then
    ok
    echo "ok   $CASE (exit 0, $(stat -c %s "$O/out.png")-byte PNG)"
  else
    sed 's/^/     | /' "$err" | head -n 5 >&2
  fi
}

BASE=(--vocab "$VOCAB" -W 64 -H 64 --steps 1 --seed 1 -q)
GEN=(-m "$MODEL" "${BASE[@]}")

# ================= 1. timesteps past the noise schedule =================
# diffusers 0.25.1 DDIM/DDPM leading spacing: (n-1-i)*(1000//n) + steps_offset; 1000 steps -> t = 1000,
# an IndexError in alphas_cumprod[t]. Refused before any work (the old build wrote a black PNG).
cs sched-ddim-1000-steps
expect 2 "ddim with 1000 steps, leading timestep spacing and steps_offset 1 runs timestep 1000, past the end of the 1000-step noise schedule" "${GEN[@]}" -p x --sampler ddim --steps 1000 -o out.png
cs sched-ddpm-1000-steps
expect 2 "diffusers' DDPMScheduler stops with an IndexError" "${GEN[@]}" -p x --sampler ddpm --steps 1000 -o out.png
cs sched-img2img-ddim-1000-steps
expect 2 "runs timestep 1000, past the end" "${GEN[@]}" -p x --sampler ddim --steps 1000 -i "$IMG/src.png" --strength 1 -o out.png
cs sched-config-steps-offset
linkfolder "$FX/cfg-offset"
rm "$FX/cfg-offset/scheduler/scheduler_config.json"
sed 's/"steps_offset": 1/"steps_offset": 500/' "$CFG/scheduler/scheduler_config.json" >"$FX/cfg-offset/scheduler/scheduler_config.json"
expect 2 "ddim with 20 steps, leading timestep spacing and steps_offset 500 runs timestep 1450" -m "$FX/cfg-offset" "${BASE[@]}" -p x --sampler ddim --steps 20 -o out.png
# What diffusers runs, sdgen runs: img2img keeps only the tail of the schedule (t = 5..1 here), and the
# sigma samplers clamp their sigma table (np.interp) for t past its end.
cs sched-img2img-tail-runs
expect_png "${GEN[@]}" -p x --sampler ddim --steps 1000 -i "$IMG/src.png" --strength 0.005
cs sched-euler-offset-runs
expect_png -m "$FX/cfg-offset" "${BASE[@]}" -p x --sampler euler --timestep-spacing leading --steps 2

# ================= 3. NaN / Inf =================
poisoned "$FX/nan-unet.safetensors" model.diffusion_model.out.2.bias '\x00\x00\xc0\x7f'
poisoned "$FX/inf-vae.safetensors" first_stage_model.decoder.conv_out.bias '\x00\x00\x80\x7f'
poisoned "$FX/inf-text.safetensors" cond_stage_model.transformer.text_model.final_layer_norm.bias '\x00\x00\x80\x7f'
cs nan-unet-bias
expect 2 "the U-Net at step 1 of 1 produced a non-finite value (NaN at element 0" -m "$FX/nan-unet.safetensors" "${BASE[@]}" -p x -o out.png
cs nan-unet-bias-check-weights
expect 2 'nan-unet.safetensors: tensor "model.diffusion_model.out.2.bias" holds NaN at element 0 (1 non-finite of 4 values)' -m "$FX/nan-unet.safetensors" "${BASE[@]}" -p x --check-weights -o out.png
cs inf-vae-bias
expect 2 "the VAE decoder produced a non-finite value (Inf at element 0" -m "$FX/inf-vae.safetensors" "${BASE[@]}" -p x -o out.png
cs inf-vae-bias-check-weights
expect 2 'tensor "first_stage_model.decoder.conv_out.bias" holds +Inf at element 0' -m "$FX/inf-vae.safetensors" "${BASE[@]}" -p x --check-weights -o out.png
cs inf-text-encoder
expect 2 "the text encoder produced a non-finite value (Inf at element" -m "$FX/inf-text.safetensors" "${BASE[@]}" -p x -o out.png
cs nan-f16-check-weights
# tiny SD 2.x stores F16: a quiet NaN there is 0x7e00
H2=$(od -An -tu8 -N8 "$MODEL2" | tr -d ' ')
OFF2=$(tail -c +9 "$MODEL2" | head -c "$H2" | grep -o '"model.diffusion_model.out.2.bias":{[^}]*}' | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
cp "$MODEL2" "$FX/nan-f16.safetensors"
chmod u+w "$FX/nan-f16.safetensors"
patch "$FX/nan-f16.safetensors" $((8 + H2 + OFF2 + 2)) '\x00\x7e'
expect 2 'tensor "model.diffusion_model.out.2.bias" holds NaN at element 1' -m "$FX/nan-f16.safetensors" "${BASE[@]}" -p x --check-weights -o out.png
cs check-weights-clean-model
expect_png "${GEN[@]}" -p x --check-weights
cs scaling-factor-1e-300
linkfolder "$FX/cfg-sf"
rm "$FX/cfg-sf/vae/config.json"
sed 's/"scaling_factor": 0.18215/"scaling_factor": 1e-300/' "$CFG/vae/config.json" >"$FX/cfg-sf/vae/config.json"
expect 2 "vae/config.json: scaling_factor 1e-300 is out of range" -m "$FX/cfg-sf" "${BASE[@]}" -p x -o out.png
cs scaling-factor-1e-37
sed 's/"scaling_factor": 0.18215/"scaling_factor": 1e-37/' "$CFG/vae/config.json" >"$FX/cfg-sf/vae/config.json"
expect 2 "dividing the latent by the VAE scaling factor 1e-37 produced a non-finite value (Inf" -m "$FX/cfg-sf" "${BASE[@]}" --steps 2 -p x -o out.png
nest() { printf "%${1}s" "" | tr ' ' '('; printf x; printf "%${1}s" "" | tr ' ' ')'; }
cs prompt-930-nested-brackets
# 1.1^930 = 3.1e38 still fits float32, but z * weight overflows: A1111 ends in NaN here as well
expect 2 "the prompt weights (largest 3.1275e+38) overflow float32 in the text conditioning" "${GEN[@]}" -p "$(nest 930)" -o out.png
cs prompt-940-nested-brackets
expect 2 'prompt: the weight of "x" is 8.11193e+38 after its brackets, beyond float32' "${GEN[@]}" -p "$(nest 940)" -o out.png
cs batch-one-item-overflows
# the item fails alone: the batch goes on, the good item is written
printf 'a red apple\n%s\n' "$(nest 930)" >"$FX/b-nest.txt"
cases=$((cases + 1))
run "${GEN[@]}" --prompts "$FX/b-nest.txt" -o 'img-{index}.png'
RC=$?
ERR=$TMP/log/$CASE.err
if [ "$RC" = 1 ] && grep -qF "b-nest.txt:2: the prompt weights (largest 3.1275e+38) overflow" "$ERR" &&
  grep -qF "1 images written, 0 skipped, 1 failed" "$ERR" && ! sanitizer_report "$ERR" &&
  png_valid "$O/img-1.png" >/dev/null && [ ! -e "$O/img-2.png" ]; then
  ok
  echo "ok   $CASE (exit 1): $(head -n 1 "$ERR" | head -c 200)"
else
  bad "$CASE: exit $RC (want 1, item 2 refused, img-1.png written)"
  sed 's/^/     | /' "$ERR" | head -n 3 >&2
fi

# ================= 4. safetensors header padding =================
DATA="$FX/data.bin"
tail -c +$((9 + HLEN)) "$MODEL" >"$DATA"
cs st-header-trailing-junk
{ le64 "$HLEN"; head -c $((HLEN - 4)) "$FX/hdr.json"; printf 'xyz '; cat "$DATA"; } >"$FX/junk.safetensors"
expect 2 "junk.safetensors: header has byte 0x78 after its JSON at header byte $((HLEN - 4)) of $HLEN" -m "$FX/junk.safetensors" "${BASE[@]}" -p x -o out.png
cs st-header-nul
{ le64 "$HLEN"; head -c $((HLEN - 4)) "$FX/hdr.json"; printf '\0   '; cat "$DATA"; } >"$FX/nul.safetensors"
expect 2 "header has byte 0x00 after its JSON" -m "$FX/nul.safetensors" "${BASE[@]}" -p x -o out.png
cs st-header-length-8-too-long
{ le64 $((HLEN + 8)); cat "$FX/hdr.json" "$DATA"; } >"$FX/long.safetensors"
expect 2 "after its JSON at header byte $HLEN of $((HLEN + 8))" -m "$FX/long.safetensors" "${BASE[@]}" -p x -o out.png
cs st-header-leading-space
{ le64 "$HLEN"; printf ' '; head -c $((HLEN - 1)) "$FX/hdr.json"; cat "$DATA"; } >"$FX/lead.safetensors"
expect 2 "header is not a JSON object (it must start with '{')" -m "$FX/lead.safetensors" "${BASE[@]}" -p x -o out.png
cs st-header-space-padding-accepted
# spaces are the padding the format allows: the header is read, and the file is refused for what it holds
mkst "$FX/padded.safetensors" '{"bert.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}        ' 8
expect 2 "not a Stable Diffusion checkpoint" -m "$FX/padded.safetensors" "${BASE[@]}" -p x -o out.png
rm -f "$DATA"

# ================= 5. address-space limit (ulimit -v) =================
# OpenBLAS retries a failed buffer mmap forever: every limit must end in an image (exit 0) or exit 3
# with the estimate, never in a hang (killed by `timeout`, exit 137 > 128).
if ! (ulimit -v 4000000 && "$SDGEN" --help) >/dev/null 2>"$TMP/log/ulimit-probe.err"; then
  if grep -q AddressSanitizer "$TMP/log/ulimit-probe.err"; then
    # ASan reserves terabytes of shadow address space and cannot start under any RLIMIT_AS; the Release
    # run of this suite covers the class.
    echo "note: $SDGEN is an ASan build, which cannot run under ulimit -v: address-space cases not run here"
  else
    bad "the ulimit probe failed: $(head -c 200 "$TMP/log/ulimit-probe.err")"
  fi
else
  n3=0
  n0=0
  for kb in 60000 100000 200000 300000 400000 500000 700000 1000000; do
    cs "ulimit-v-$kb"
    ULIMIT_V=$kb
    LIMIT=60
    cases=$((cases + 1))
    rm -f "$O/out.png"
    run "${GEN[@]}" -p x --steps 2 -o out.png
    rc=$?
    err=$TMP/log/$CASE.err
    if [ "$rc" = 3 ] && grep -qE "ulimit -v" "$err" && [ "$(grep -c . "$err")" = 1 ] && [ ! -e "$O/out.png" ]; then
      ok
      n3=$((n3 + 1))
      echo "ok   $CASE (exit 3): $(head -c 200 "$err")"
    elif [ "$rc" = 0 ] && png_valid "$O/out.png" >/dev/null; then
      ok
      n0=$((n0 + 1))
      echo "ok   $CASE (exit 0, PNG written)"
    else
      bad "$CASE: exit $rc (want 0 with a PNG, or 3 naming ulimit -v)"
      sed 's/^/     | /' "$err" | head -n 3 >&2
    fi
  done
  LIMIT=120
  # both outcomes must occur: the small limits cannot hold OpenBLAS's buffers, 1 GB holds everything
  [ "$n3" -ge 3 ] && [ "$n0" -ge 1 ] || bad "ulimit -v: $n3 refusals and $n0 images (want >= 3 and >= 1)"
  cs ulimit-v-200000-estimate
  ULIMIT_V=200000
  expect 3 "needs about" "${GEN[@]}" -p x -o out.png
  cs ulimit-v-map-fails
  # a 1 GiB (sparse) model cannot be mapped under 500 MB: out of memory (3), not bad input (2)
  BIGH='{"a":{"dtype":"F32","shape":[268435456],"data_offsets":[0,1073741824]}}'
  mkst "$FX/big.safetensors" "$BIGH" 0
  truncate -s $((8 + ${#BIGH} + 1073741824)) "$FX/big.safetensors"
  ULIMIT_V=500000
  expect 3 "big.safetensors: out of memory: cannot map the 1073.7 MB file" -m "$FX/big.safetensors" "${BASE[@]}" -p x -o out.png
  rm -f "$FX/big.safetensors"
fi

# ================= 6. FIFOs and devices where a file belongs =================
# open() of a FIFO for reading blocks until a writer comes: every one of these hung before.
mkfifo "$FX/fifo.safetensors" "$FX/fifo.png" "$FX/fifo.txt"
LIMIT=20
cs fifo-model
expect 2 "fifo.safetensors: not a regular file (a FIFO)" -m "$FX/fifo.safetensors" "${BASE[@]}" -p x -o out.png
cs fifo-init-image
expect 2 "fifo.png: not a regular file (a FIFO)" "${GEN[@]}" -p x --steps 2 -i "$FX/fifo.png" -o out.png
cs fifo-vocab
expect 2 "fifo.txt: not a regular file (a FIFO)" -m "$MODEL" --vocab "$FX/fifo.txt" -W 64 -H 64 --steps 1 -q -p x -o out.png
cs fifo-unet-config
linkfolder "$FX/cfg-fifo"
rm "$FX/cfg-fifo/unet/config.json"
mkfifo "$FX/cfg-fifo/unet/config.json"
expect 2 "cfg-fifo/unet/config.json: not a regular file (a FIFO)" -m "$FX/cfg-fifo" "${BASE[@]}" -p x -o out.png
cs fifo-scheduler-config
linkfolder "$FX/cfg-fifo2"
rm "$FX/cfg-fifo2/scheduler/scheduler_config.json"
mkfifo "$FX/cfg-fifo2/scheduler/scheduler_config.json"
expect 2 "scheduler_config.json: not a regular file (a FIFO)" -m "$FX/cfg-fifo2" "${BASE[@]}" -p x -o out.png
cs fifo-hash-cache
# a FIFO at ~/.cache/sdgen/hashes.json: read as "no cache", left as it is, and the image is written
mkdir -p "$FX/home/.cache/sdgen"
mkfifo "$FX/home/.cache/sdgen/hashes.json"
RUNENV=(HOME="$FX/home" XDG_CACHE_HOME=)
expect_png "${GEN[@]}" -p x
[ -p "$FX/home/.cache/sdgen/hashes.json" ] || bad "fifo-hash-cache: the FIFO was replaced"
LIMIT=120

# ================= 7. the model file changed while in use =================
# run_changing NAME CHANGE: a 300-step run of a private copy of the model; CHANGE (a command on $COPY)
# runs once the third step is reported
run_changing() {
  cs "$1"
  cases=$((cases + 1))
  COPY=$FX/$1.safetensors
  cp "$MODEL" "$COPY"
  chmod u+w "$COPY"
  local err=$TMP/log/$CASE.err i
  (cd "$O" && exec timeout -s KILL "$LIMIT" "$SDGEN" -m "$COPY" --vocab "$VOCAB" -W 64 -H 64 --steps 300 \
    --cfg-scale 1 --sampler euler --seed 1 -p x -o out.png) >/dev/null 2>"$err" &
  local pid=$!
  for i in $(seq 1200); do
    grep -q "step 3/300" "$err" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  grep -q "step 3/300" "$err" || bad "$CASE: the run never reported step 3"
  eval "$2"
  wait $pid
  RC=$?
  ERR=$err
}
run_changing model-truncated 'truncate -s 5000000 "$COPY"'
if [ "$RC" = 2 ] && grep -q "sdgen: the model file changed while in use (truncated or rewritten" "$ERR" &&
  ! sanitizer_report "$ERR" && [ -z "$(ls -A "$O")" ]; then
  ok
  echo "ok   $CASE (exit 2): $(tail -n 1 "$ERR")"
else
  bad "$CASE: exit $RC (want 2, the message, nothing written)"
  tail -n 3 "$ERR" | sed 's/^/     | /' >&2
fi
# the same bytes written over part of it (as a copy in place would): no SIGBUS, but the mtime moved
run_changing model-rewritten 'dd if="$MODEL" of="$COPY" bs=4096 skip=100 seek=100 count=10 conv=notrunc status=none'
if [ "$RC" = 2 ] && grep -q "the model file changed while in use (rewritten" "$ERR" && ! sanitizer_report "$ERR" &&
  [ -z "$(ls -A "$O")" ]; then
  ok
  echo "ok   $CASE (exit 2): $(tail -n 1 "$ERR")"
else
  bad "$CASE: exit $RC (want 2, the message, nothing written)"
  tail -n 3 "$ERR" | sed 's/^/     | /' >&2
fi

# ================= 16. messages that named the wrong problem =================
cs vocab-dev-zero
expect 2 "/dev/zero: not a regular file (a character device)" -m "$MODEL" --vocab /dev/zero -W 64 -H 64 --steps 1 -q -p x -o out.png
cs config-is-a-directory
linkfolder "$FX/cfg-dir"
rm "$FX/cfg-dir/unet/config.json"
mkdir "$FX/cfg-dir/unet/config.json"
expect 2 "cfg-dir/unet/config.json: not a regular file (a directory)" -m "$FX/cfg-dir" "${BASE[@]}" -p x -o out.png
# JPEG frame variants stb_image cannot decode: the photo's SOF0 header changed to each (ITU-T T.81 B.1)
SOF=$(grep -obUaP '\xff\xc0' "$IMG/photo.jpg" | head -n 1 | cut -d: -f1)
jpeg_variant() { # jpeg_variant NAME OFFSET_IN_SOF BYTE SUBSTRING
  cs "jpeg-$1"
  cp "$IMG/photo.jpg" "$FX/$1.jpg"
  chmod u+w "$FX/$1.jpg"
  patch "$FX/$1.jpg" $((SOF + $2)) "$3"
  expect 2 "$1.jpg: unsupported JPEG variant: $4" "${GEN[@]}" -p x --steps 2 -i "$FX/$1.jpg" -o out.png
}
jpeg_variant 12-bit 4 '\x0c' "12-bit samples"
jpeg_variant arithmetic 1 '\xc9' "arithmetic coding (SOF9)"
jpeg_variant lossless 1 '\xc3' "lossless (SOF3)"
cs png-zero-size
mkpng_header "$FX/zero.png" 0 0
expect 2 "zero.png: image has zero size (0x0)" "${GEN[@]}" -p x --steps 2 -i "$FX/zero.png" -o out.png
cs prompts-plain-first-line-brace
MAXL=3
printf '{red} apple\na cat\n' >"$FX/b-brace.txt"
expect 1 "(the file is read as JSON Lines because its first prompt line starts with '{'" "${GEN[@]}" --prompts "$FX/b-brace.txt" -o 'img-{index}.png'

# diffusers' fp16 variant names (what a download of only "*.fp16.safetensors" leaves): read when the plain
# file is missing, and the same image as the folder with plain names
cs folder-fp16-variant-names
linkfolder "$FX/variant/tiny"
linkfolder "$FX/plain/tiny" # same folder name: the infotext names the model by it
mv "$FX/variant/tiny/unet/diffusion_pytorch_model.safetensors" "$FX/variant/tiny/unet/diffusion_pytorch_model.fp16.safetensors"
mv "$FX/variant/tiny/text_encoder/model.safetensors" "$FX/variant/tiny/text_encoder/model.fp16.safetensors"
cases=$((cases + 1))
run -m "$FX/variant/tiny" "${BASE[@]}" -p "a red apple" -o variant.png
rv=$?
run -m "$FX/plain/tiny" "${BASE[@]}" -p "a red apple" -o plain.png
rp=$?
if [ "$rv" = 0 ] && [ "$rp" = 0 ] && cmp -s "$O/variant.png" "$O/plain.png"; then
  ok
  echo "ok   $CASE: unet and text_encoder under *.fp16.safetensors names give the plain folder's PNG byte for byte"
else
  bad "$CASE: exit $rv (variant) / $rp (plain), PNGs $(cmp "$O/variant.png" "$O/plain.png" 2>&1 | head -c 120)"
fi
# neither name: the message names the plain one
cs folder-weights-missing-both-names
linkfolder "$FX/cfg-novariant"
rm "$FX/cfg-novariant/unet/diffusion_pytorch_model.safetensors"
expect 2 "unet/diffusion_pytorch_model.safetensors: missing (the unet config is there but its weights are not)" -m "$FX/cfg-novariant" "${BASE[@]}" -p x -o out.png

echo "$cases cases: $pass passed, $fail failed"
[ "$fail" = 0 ]
