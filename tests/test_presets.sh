#!/usr/bin/env bash
# test_presets.sh — few-step presets, guidance off, the modelspec preset, ddim's eta and the img2img
# few-step rule, through the CLI on the tiny SD 1.x model (docs/SEMANTICS.md, "Presets" and "Samplers").
# Asserted: a --preset run's PNG (pixels and infotext) equals byte for byte the run with the preset's
# options written out; explicit options override the preset wherever they stand; guidance off (CFG <= 1)
# runs no negative pass (no unconditional text embedding, a U-Net batch of 1); a model whose modelspec
# metadata names LCM gets the lcm preset and --preset none turns that off; img2img with int(steps·strength)
# = 0 is refused with exit 2 naming both values, before the model loads and before any compute; --eta
# applies to ddim only and is written as A1111's "Eta DDIM"; heun's progress counts model evaluations.
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
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/presets
rm -rf "$TMP"
mkdir -p "$TMP"
unset SDGEN_VOCAB SDGEN_MODEL
export XDG_CACHE_HOME=$TMP/cache
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
has() { case "$2" in *"$3"*) ok "$1";; *) bad "$1: '$3' not in '$2'";; esac; }

BASE=(--vocab "$VOCAB" -p "a lighthouse at dusk" -W 64 -H 64 --seed 11 --overwrite)
# run NAME ARGS...: generate $TMP/NAME.png; stderr in $TMP/NAME.err; returns sdgen's exit code
run() {
  local n=$1
  shift
  "$SDGEN" "${BASE[@]}" -o "$TMP/$n.png" "$@" >"$TMP/$n.out" 2>"$TMP/$n.err"
}
# params FILE: the PNG's A1111 parameters text
params() { png_params "$1"; }
# same NAME A B: the two PNGs are byte-identical
same() { if cmp -s "$TMP/$2.png" "$TMP/$3.png"; then ok "$1"; else bad "$1: $2.png and $3.png differ"; fi; }
sane() {
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$TMP/$1.err"; then bad "$1: sanitizer report"; fi
}

# ---- presets against their options written out
run turbo -m "$MODEL" --preset turbo
check "turbo: exit 0" $? 0
run turbo_x -m "$MODEL" --sampler euler_a --timestep-spacing trailing --steps 1 --cfg-scale 1
check "turbo written out: exit 0" $? 0
same "turbo = euler_a, trailing, 1 step, CFG 1 (pixels and infotext)" turbo turbo_x
p=$(params "$TMP/turbo.png")
has "turbo infotext: Steps 1, the sampler" "$p" "Steps: 1, Sampler: Euler a, Schedule type: Automatic, CFG scale: 1, Seed: 11"

run lcm -m "$MODEL" --preset lcm
check "lcm: exit 0" $? 0
run lcm_x -m "$MODEL" --sampler lcm --steps 4 --cfg-scale 1.5
same "lcm = lcm sampler, 4 steps, CFG 1.5" lcm lcm_x
has "lcm infotext" "$(params "$TMP/lcm.png")" "Steps: 4, Sampler: LCM, Schedule type: Automatic, CFG scale: 1.5,"

run lightning -m "$MODEL" --preset lightning
check "lightning: exit 0" $? 0
run lightning_x -m "$MODEL" --sampler euler --timestep-spacing trailing --steps 4 --cfg-scale 1
same "lightning = euler, trailing, 4 steps, CFG 1" lightning lightning_x
has "lightning infotext" "$(params "$TMP/lightning.png")" "Steps: 4, Sampler: Euler, Schedule type: Automatic, CFG scale: 1,"

# explicit options win, before or after --preset on the line
run over1 -m "$MODEL" --steps 2 --preset turbo --sampler euler
run over1_x -m "$MODEL" --sampler euler --timestep-spacing trailing --steps 2 --cfg-scale 1
same "--steps 2 --preset turbo --sampler euler = euler, trailing, 2 steps, CFG 1" over1 over1_x
has "override infotext" "$(params "$TMP/over1.png")" "Steps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 1,"
run over3 -m "$MODEL" --preset turbo --sampler lcm
check "--preset turbo --sampler lcm: exit 0 (lcm keeps its own timesteps)" $? 0
has "--preset turbo --sampler lcm: infotext" "$(params "$TMP/over3.png")" "Steps: 1, Sampler: LCM, Schedule type: Automatic, CFG scale: 1,"
run over2 -m "$MODEL" --preset lcm --cfg-scale 1
has "--preset lcm --cfg-scale 1: CFG 1, 4 steps of LCM" "$(params "$TMP/over2.png")" "Steps: 4, Sampler: LCM, Schedule type: Automatic, CFG scale: 1,"

# ---- guidance off: no negative pass (CFG 1 and below, as diffusers' guidance_scale <= 1)
for cfg in 1 0.5 0; do
  d=$TMP/dump-cfg$cfg
  run cfg$cfg -m "$MODEL" --preset turbo --cfg-scale $cfg --dump-dir "$d"
  check "cfg $cfg: exit 0" $? 0
  if [ -e "$d/text_emb_uncond.npy" ]; then bad "cfg $cfg: the negative prompt was encoded"; else ok "cfg $cfg: no negative prompt encoded"; fi
  shape=$(head -c 128 "$d/unet0_sample.npy" | tr -c "[:print:]" ' ' | grep -o "'shape': ([0-9, ]*" | tr -d ' ,' )
  check "cfg $cfg: U-Net batch of 1" "$shape" "'shape':(1488"
done
run cfg2 -m "$MODEL" --preset turbo --cfg-scale 2 --dump-dir "$TMP/dump-cfg2"
shape=$(head -c 128 "$TMP/dump-cfg2/unet0_sample.npy" | tr -c "[:print:]" ' ' | grep -o "'shape': ([0-9, ]*" | tr -d ' ,' )
check "cfg 2: U-Net batch of 2 (the negative pass)" "$shape" "'shape':(2488"

# ---- bad presets
"$SDGEN" "${BASE[@]}" -m "$MODEL" --preset fast -o "$TMP/bad.png" >"$TMP/bad.out" 2>"$TMP/bad.err"
check "--preset fast: exit 2" $? 2
has "--preset fast: message" "$(cat "$TMP/bad.err")" 'unknown preset "fast" (turbo, lcm, lightning, none)'
check "--preset fast: no output" "$(ls "$TMP/bad.png" 2>/dev/null)" ""

# ---- the model's modelspec metadata picks the preset
LCMMODEL=$TMP/lcm-model.safetensors
python3 - "$MODEL" "$LCMMODEL" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(n))
    body = f.read()
meta = head.get("__metadata__", {})
meta.update({"modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": "stable-diffusion-v1/lcm",
             "modelspec.title": "tiny LCM test model"})
head["__metadata__"] = meta
h = json.dumps(head, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + body)
PY
run ms -m "$LCMMODEL"
check "modelspec lcm: exit 0" $? 0
has "modelspec lcm: said" "$(cat "$TMP/ms.err")" 'preset lcm from the model'"'"'s modelspec.architecture "stable-diffusion-v1/lcm" (--preset none turns it off)'
has "modelspec lcm: infotext" "$(params "$TMP/ms.png")" "Steps: 4, Sampler: LCM, Schedule type: Automatic, CFG scale: 1.5,"
run ms_x -m "$LCMMODEL" --preset lcm
same "modelspec lcm = --preset lcm" ms ms_x
run ms_none -m "$LCMMODEL" --preset none --steps 2
has "--preset none: the defaults" "$(params "$TMP/ms_none.png")" "Steps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5,"
run ms_over -m "$LCMMODEL" --sampler ddim
has "modelspec preset, --sampler ddim kept" "$(params "$TMP/ms_over.png")" "Steps: 4, Sampler: DDIM, Schedule type: Automatic, CFG scale: 1.5,"

# ---- img2img with few steps: int(steps·strength) >= 1 (diffusers get_timesteps), else exit 2 at once
INIT=$TMP/turbo.png
"$SDGEN" "${BASE[@]}" -m "$TMP/no-such-model.safetensors" --preset turbo -i "$INIT" --strength 0.5 -o "$TMP/i2i.png" >"$TMP/i2i.out" 2>"$TMP/i2i.err"
check "turbo img2img strength 0.5: exit 2" $? 2
has "turbo img2img strength 0.5: both values, before the model loads" "$(cat "$TMP/i2i.err")" "strength 0.5 with 1 steps runs no denoising step (int(steps·strength) = 0)"
check "turbo img2img strength 0.5: one line" "$(wc -l <"$TMP/i2i.err")" 1
check "turbo img2img strength 0.5: no output" "$(ls "$TMP/i2i.png" 2>/dev/null)" ""
"$SDGEN" "${BASE[@]}" -m "$MODEL" --preset lcm -i "$INIT" --strength 0.2 -o "$TMP/i2i.png" >"$TMP/i2i.out" 2>"$TMP/i2i.err"
check "lcm img2img 4 steps x 0.2: exit 2" $? 2
has "lcm img2img 4 steps x 0.2: message" "$(cat "$TMP/i2i.err")" "strength 0.2 with 4 steps runs no denoising step"
# the model's preset makes 4 steps: the rule applies after it, still before any compute
"$SDGEN" "${BASE[@]}" -m "$LCMMODEL" -i "$INIT" --strength 0.2 -o "$TMP/i2i.png" >"$TMP/i2i.out" 2>"$TMP/i2i.err"
check "modelspec lcm img2img x 0.2: exit 2" $? 2
has "modelspec lcm img2img x 0.2: message" "$(cat "$TMP/i2i.err")" "strength 0.2 with 4 steps runs no denoising step"
check "modelspec lcm img2img x 0.2: no output" "$(ls "$TMP/i2i.png" 2>/dev/null)" ""
run i2i_ok -m "$MODEL" --preset turbo -i "$INIT" --strength 1
check "turbo img2img strength 1: exit 0 (one step)" $? 0
has "turbo img2img strength 1: infotext" "$(params "$TMP/i2i_ok.png")" "Denoising strength: 1"
run i2i_lcm -m "$MODEL" --preset lcm -i "$INIT" --strength 0.5
check "lcm img2img 4 steps x 0.5 (2 steps): exit 0" $? 0

# ---- eta: ddim only, [0, 1], written as "Eta DDIM"
run eta -m "$MODEL" --sampler ddim --steps 2 --eta 0.5
check "ddim --eta 0.5: exit 0" $? 0
has "ddim --eta 0.5: infotext" "$(params "$TMP/eta.png")" "Eta DDIM: 0.5"
run eta0 -m "$MODEL" --sampler ddim --steps 2 --eta 0
case "$(params "$TMP/eta0.png")" in *Eta*) bad "eta 0: Eta in the infotext";; *) ok "eta 0: no Eta in the infotext";; esac
printf '%s\n' '{"prompt": "a lighthouse at dusk", "sampler": "ddim", "steps": 2, "eta": 0.5, "seed": 11, "output": "'"$TMP"'/eta_batch.png"}' >"$TMP/eta.jsonl"
"$SDGEN" --vocab "$VOCAB" -m "$MODEL" -W 64 -H 64 --overwrite --prompts "$TMP/eta.jsonl" >"$TMP/eta_batch.out" 2>"$TMP/eta_batch.err"
check "batch line with \"eta\": exit 0" $? 0
same "batch line with \"eta\": 0.5 = --eta 0.5" eta eta_batch
run eta_bad -m "$MODEL" --sampler euler --steps 2 --eta 0.5
check "euler --eta 0.5: exit 2" $? 2
has "euler --eta 0.5: message" "$(cat "$TMP/eta_bad.err")" "only the ddim sampler has an eta"
run eta_range -m "$MODEL" --sampler ddim --eta 1.5
check "--eta 1.5: exit 2" $? 2
has "--eta 1.5: message" "$(cat "$TMP/eta_range.err")" "--eta expects a number in [0, 1]"

# ---- two model calls per step: the progress counts evaluations (2·steps − 1)
run heun -m "$MODEL" --sampler heun --steps 2
check "heun: exit 0" $? 0
check "heun 2 steps: 3 evaluations reported" "$(grep -c '^image 1/1 eval [0-9]/3 ' "$TMP/heun.err")" 3
has "heun infotext: Steps 2" "$(params "$TMP/heun.png")" "Steps: 2, Sampler: Heun,"

for f in "$TMP"/*.err; do n=$(basename "$f" .err); sane "$n"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
