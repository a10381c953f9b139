#!/usr/bin/env bash
# test_run_safety.sh — what a run does to its output folder, its terminal and its pipes, and what it
# refuses before loading the model (docs/RELIABILITY.md, "Robustness round 2, part B"). Sections:
#   strict number syntax; batch-file numbers with the command line's ranges; refusals before the model
#   loads (long names, links, several images to one file, strength); only regular files replaced;
#   --skip-existing keeps only complete PNGs; the model hash only when a PNG needs it; closed and broken
#   pipes; the file size limit and temporary files a killed run left; control characters in messages and
#   output paths; an oversized --prompts file.
# "Before the model loads" is shown by giving a model path that does not exist: a refusal that comes
# first names its own problem; one that came after loading would say "cannot open" instead.
# Every case asserts the exit code, a message substring, no crash or sanitizer report, and what is in its
# output folder afterwards (unchanged for refusals; the exact files and their completeness otherwise).
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL="$SHARED/golden/models/tiny-sd1.safetensors"
VOCAB="$SHARED/clip"
IMG="$SRC/tests/fixtures/images"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/run-safety
rm -rf "$TMP"
mkdir -p "$TMP/out" "$TMP/log" "$TMP/fx"
FX=$TMP/fx
NOMODEL=$TMP/no-such-model.safetensors
unset SDGEN_VOCAB SDGEN_MODEL
export XDG_CACHE_HOME=$TMP/cache # the hash cache of these runs, not the user's
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"

PRE=(-m "$NOMODEL" --vocab "$VOCAB" -W 64 -H 64 --steps 2 --seed 1 -q) # refused before the model loads
GEN=(-m "$MODEL" --vocab "$VOCAB" -W 64 -H 64 --steps 1 --seed 1)       # real runs (tiny model)

# cs NAME: start a case; $O is its (empty) output folder and working directory
cs() {
  CASE=$1
  O=$TMP/out/$1
  mkdir -p "$O"
  MAXL=1
}
# sane FILE: no crash report, no raw ESC / C1 CSI byte / other C0 control (except tab) in FILE
sane() {
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$1"; then bad "$CASE: sanitizer report"; return 1; fi
  if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$1"; then bad "$CASE: raw control character in $1"; return 1; fi
  return 0
}
# expect RC SUBSTRING ARGS...: run sdgen in $O; exit code, message, at most MAXL lines, folder unchanged
expect() {
  local want=$1 pat=$2 before after err=$TMP/log/$CASE.err f=0
  ERR=$err
  shift 2
  before=$(cd "$O" && find . -mindepth 1 -printf '%p %y %s\n' | sort)
  (cd "$O" && exec "$SDGEN" "$@" >"$TMP/log/$CASE.out" 2>"$err")
  local rc=$?
  after=$(cd "$O" && find . -mindepth 1 -printf '%p %y %s\n' | sort)
  [ "$rc" = "$want" ] || { bad "$CASE: exit $rc, want $want"; f=1; }
  sane "$err" || f=1
  grep -qF -- "$pat" "$err" || { bad "$CASE: stderr lacks \"$pat\""; f=1; }
  local nl
  nl=$(grep -c . "$err")
  [ "$nl" -ge 1 ] && [ "$nl" -le "$MAXL" ] || { bad "$CASE: $nl stderr lines, want 1..$MAXL"; f=1; }
  [ "$before" = "$after" ] || { bad "$CASE: the output folder changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"; f=1; }
  if [ $f = 0 ]; then ok "$CASE (exit $rc): $(head -n 1 "$err" | head -c 200)"; else sed 's/^/     | /' "$err" | head -n 5 >&2; fi
}
# run ARGS...: sdgen in $O (no checks); rc, $ERR, $OUT
run() {
  ERR=$TMP/log/$CASE.err
  OUT=$TMP/log/$CASE.out
  (cd "$O" && exec "$SDGEN" "$@" >"$OUT" 2>"$ERR")
  rc=$?
  sane "$ERR"
}
files() { (cd "$O" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | tr '\n' ' '); }
all_valid() { # all_valid FILE...: every one a complete PNG
  local f why
  for f in "$@"; do
    why=$(png_valid "$O/$f") || { bad "$CASE: $why"; return; }
  done
  ok "$CASE: $* complete PNGs"
}

# ================= strict numbers =================
opt_case() { # opt_case NAME SUBSTRING OPTION VALUE
  cs "num-$1"
  expect 2 "$2" "${PRE[@]}" -p x -o out.png "$3" "$4"
}
opt_case seed-space '--seed expects an integer in [0, 2^64-1] (or -1 for random), got " -5"' --seed ' -5'
opt_case seed-plus '--seed expects an integer' --seed '+5'
opt_case seed-trailing '--seed expects an integer' --seed '5 '
opt_case seed-hex '--seed expects an integer' --seed 0x10
opt_case steps-space '--steps expects an integer in [1, 1000], got " 5"' --steps ' 5'
opt_case steps-plus '--steps expects an integer in [1, 1000]' --steps +5
opt_case steps-exp '--steps expects an integer in [1, 1000]' --steps 1e1
opt_case steps-overflow '--steps expects an integer in [1, 1000]' --steps 99999999999999999999
opt_case cfg-inf '--cfg-scale expects a number in [0, 100], got "inf"' --cfg-scale inf
opt_case cfg-space '--cfg-scale expects a number in [0, 100]' --cfg-scale ' 7'
opt_case cfg-hexfloat '--cfg-scale expects a number in [0, 100]' --cfg-scale 0x1p3
opt_case cfg-overflow '--cfg-scale expects a number in [0, 100]' --cfg-scale 1e999
opt_case mem-inf '--max-memory expects a size like 8G' --max-memory inf
opt_case mem-1e30T '--max-memory expects a size like 8G' --max-memory 1e30T
opt_case mem-half-byte '--max-memory expects a size like 8G' --max-memory 0.5
opt_case mem-negative '--max-memory expects a size like 8G' --max-memory -1G
opt_case mem-unit '--max-memory expects a size like 8G' --max-memory 8X
opt_case mem-space '--max-memory expects a size like 8G' --max-memory ' 8G'
opt_case mem-fraction '--max-memory expects a size like 8G' --max-memory 1.0001K
opt_case mem-too-large 'a whole number of bytes from 1 to 1000T' --max-memory 2000T
opt_case threads-real '--threads expects an integer in [1, 1024], got "2.5"' --threads 2.5
opt_case batch-count-exp '--batch-count expects an integer in [1, 100000]' --batch-count 1e3
opt_case clip-skip-minus-zero '--clip-skip expects an integer in [1, 64]' --clip-skip -0
opt_case width-hex '--width expects an integer in [8, 65536] that is a multiple of 8' --width 0x40
# accepted spellings still mean what they say
cs num-accepted
run "${GEN[@]}" -p x -o ok.png --max-memory 2.5G --seed 007 --cfg-scale 7.50 --steps 01 -q
check "$CASE: exit code" "$rc" 0
params=$(png_params "$O/ok.png" | tail -n 1)
check "$CASE: seed 007 -> 7, cfg 7.50 -> 7.5, steps 01 -> 1" \
  "$(printf '%s' "$params" | grep -o 'Steps: 1, .*CFG scale: 7.5, Seed: 7,' | head -c 6)" "Steps:"

# ================= batch-file numbers, the command line's ranges =================
batch_case() { # batch_case NAME JSON_LINE SUBSTRING: every line fails before the model loads: exit 1
  cs "batch-$1"
  MAXL=2
  printf '%s\n' "$2" >"$FX/b-$1.jsonl"
  expect 1 "b-$1.jsonl:1: $3" "${PRE[@]}" --prompts "$FX/b-$1.jsonl" -o 'img-{index}.png'
}
batch_case count-zero '{"prompt": "x", "batch_count": 0}' '"batch_count" expects an integer in [1, 100000], got "0"'
batch_case count-negative '{"prompt": "x", "batch_count": -3}' '"batch_count" expects an integer in [1, 100000], got "-3"'
batch_case count-int-max '{"prompt": "x", "batch_count": 2147483647}' '"batch_count" expects an integer in [1, 100000]'
batch_case count-over '{"prompt": "x", "batch_count": 100001}' '"batch_count" expects an integer in [1, 100000]'
batch_case steps-over '{"prompt": "x", "steps": 1001}' '"steps" expects an integer in [1, 1000]'
batch_case height-odd '{"prompt": "x", "height": 68}' '"height" expects an integer in [8, 65536] that is a multiple of 8'
batch_case clip-skip '{"prompt": "x", "clip_skip": 65}' '"clip_skip" expects an integer in [1, 64]'
batch_case cfg '{"prompt": "x", "cfg_scale": 100.5}' '"cfg_scale" expects a number in [0, 100]'
batch_case strength-zero '{"prompt": "x", "strength": 0}' '"strength" expects a number in (0, 1]'
batch_case eta '{"prompt": "x", "eta": 1.5}' '"eta" expects a number in [0, 1], got "1.5"'
batch_case eta-sampler '{"prompt": "x", "eta": 0.5, "sampler": "euler"}' '--eta 0.5: only the ddim sampler has an eta'
batch_case seed-negative '{"prompt": "x", "seed": -1}' '"seed" expects an integer in [0, 2^64-1]'
batch_case strength-steps '{"prompt": "x", "init_image": "a.png", "strength": 0.01, "steps": 20}' 'strength 0.01 with 20 steps runs no denoising step'
# the same bounds in both messages, key by key
for kv in "steps 0 --steps" "width 12 --width" "height 0 --height" "cfg_scale 101 --cfg-scale" \
  "strength 0 --strength" "clip_skip 0 --clip-skip" "batch_count 0 --batch-count"; do
  set -- $kv
  cs "same-range-$1"
  printf '{"prompt": "x", "%s": %s}\n' "$1" "$2" >"$FX/same-$1.jsonl"
  run "${PRE[@]}" --prompts "$FX/same-$1.jsonl" -o 'img-{index}.png'
  from_batch=$(sed -n 's/.*expects \(.*\), got.*/\1/p' "$ERR" | head -n 1)
  run "${PRE[@]}" -p x -o out.png "$3" "$2"
  from_cli=$(sed -n 's/.*expects \(.*\), got.*/\1/p' "$ERR" | head -n 1)
  if [ -n "$from_cli" ] && [ "$from_cli" = "$from_batch" ]; then ok "$CASE: \"$1\" and $3 both say '$from_cli'"; else
    bad "$CASE: batch '$from_batch' vs command line '$from_cli'"
  fi
done

# ================= refused before the model loads =================
cs pre-long-name
expect 2 "the file name is 304 bytes long, more than the 255" "${PRE[@]}" -p x -o "$(printf 'a%.0s' $(seq 300)).png"
cs pre-dangling-link
ln -s "$O/nowhere.png" "$O/out.png"
expect 2 "out.png: is a symbolic link to nothing (dangling)" "${PRE[@]}" -p x -o out.png
check "$CASE: nothing created through the link" "$([ -e "$O/nowhere.png" ] && echo yes || echo no)" no
cs pre-link-overwrite
printf 'precious' >"$FX/target.txt"
ln -s "$FX/target.txt" "$O/out.png"
expect 2 "out.png: is a symbolic link;" "${PRE[@]}" -p x -o out.png --overwrite
check "$CASE: link target untouched" "$(cat "$FX/target.txt")" precious
cs pre-strength-zero
expect 2 '--strength expects a number in (0, 1], got "0"' "${PRE[@]}" -p x -i "$IMG/src.png" --strength 0 -o out.png
cs pre-strength-times-steps
expect 2 'strength 0.01 with 20 steps runs no denoising step' "${PRE[@]}" -p x -i "$IMG/src.png" --strength 0.01 --steps 20 -o out.png
cs pre-width-odd
expect 2 '-W expects an integer in [8, 65536] that is a multiple of 8, got "60"' "${PRE[@]}" -p x -W 60 -o out.png
cs pre-later-image-exists
printf 'precious' >"$O/img-2.png"
expect 2 "img-2.png: already exists (use --overwrite to replace it)" "${PRE[@]}" -p x --batch-count 3 -o 'img-{index}.png'
cs pre-dump-dir-under-file
printf 'file' >"$O/file"
expect 2 "cannot create directory" "${PRE[@]}" -p x -o out.png --dump-dir "$O/file/dump"
cs pre-control-in-template
expect 2 'out\x1b[2J.png: the output path holds a control character (byte 4); refused' "${PRE[@]}" -p x -o $'out\e[2J.png'
cs pre-newline-in-template
expect 2 'a\nb.png: the output path holds a control character (byte 2)' "${PRE[@]}" -p x -o $'a\nb.png'
# several images into one name: "{{index}}" is literal text, so the images are numbered
cs several-literal-index
run "${GEN[@]}" -p x -o '{{index}}.png' --batch-count 3 -q
check "$CASE: exit code" "$rc" 0
check "$CASE: three numbered files" "$(files)" "{index}-1.png {index}-2.png {index}-3.png "
all_valid "{index}-1.png" "{index}-2.png" "{index}-3.png"
cs several-item-output
printf '{"prompt": "x", "output": "fixed.png", "batch_count": 2}\n' >"$FX/fixed.jsonl"
run "${GEN[@]}" --prompts "$FX/fixed.jsonl" -q
check "$CASE: exit code" "$rc" 0
check "$CASE: a batch line's fixed name numbered too" "$(files)" "fixed-1.png fixed-2.png "
# two lines, one file: the second is refused before the model loads, the first is written
cs collision
printf '{"prompt": "a", "output": "same.png"}\n{"prompt": "b", "output": "./same.png"}\n' >"$FX/collide.jsonl"
run "${GEN[@]}" --prompts "$FX/collide.jsonl"
check "$CASE: exit code" "$rc" 1
check "$CASE: one file" "$(files)" "same.png "
msg_line=$(grep -n 'collide.jsonl:2: ./same.png: also the output of image 1 (line 1)' "$ERR" | cut -d: -f1)
model_line=$(grep -n '^sdgen: model ' "$ERR" | cut -d: -f1)
check "$CASE: refused before the model line" "$([ -n "$msg_line" ] && [ -n "$model_line" ] && [ "$msg_line" -lt "$model_line" ] && echo yes || echo "no ($msg_line, $model_line)")" yes
check "$CASE: the written one is line 1's" "$(png_params "$O/same.png" | head -n 1)" a

# ================= only regular files are replaced =================
cs overwrite-fifo
mkfifo "$O/out.png"
expect 2 "out.png: is a FIFO, not a regular file; sdgen never replaces one" "${PRE[@]}" -p x -o out.png --overwrite
check "$CASE: still a FIFO" "$(stat -c %F "$O/out.png")" fifo
cs overwrite-device
expect 2 "/dev/null: is a character device, not a regular file" "${PRE[@]}" -p x -o /dev/null --overwrite
check "$CASE: /dev/null still a device" "$(stat -c %F /dev/null)" "character special file"
cs overwrite-directory
mkdir "$O/out.png"
expect 2 "out.png: is a directory, not an image file name" "${PRE[@]}" -p x -o out.png --overwrite
cs overwrite-regular
printf 'old' >"$O/out.png"
run "${GEN[@]}" -p x -o out.png --overwrite -q
check "$CASE: exit code" "$rc" 0
all_valid out.png

# ================= --skip-existing keeps only complete PNGs =================
cs skip-existing
run "${GEN[@]}" -p x --batch-count 4 -o 'i-{index}.png' -q
check "$CASE: 4 written" "$rc $(files)" "0 i-1.png i-2.png i-3.png i-4.png "
: >"$O/i-1.png"
head -c 3000 "$O/i-2.png" >"$O/cut" && mv "$O/cut" "$O/i-2.png"
printf 'junk' >>"$O/i-4.png"
sum3=$(sha256sum <"$O/i-3.png")
run "${GEN[@]}" -p x --batch-count 4 -o 'i-{index}.png' --skip-existing
check "$CASE: exit code" "$rc" 0
check "$CASE: 0-byte file regenerated" "$(grep -c 'i-1.png: not a PNG file; generating it again (--skip-existing)' "$ERR")" 1
check "$CASE: truncated file regenerated" "$(grep -c 'i-2.png: truncated PNG .*; generating it again' "$ERR")" 1
check "$CASE: garbage after IEND regenerated" "$(grep -c "i-4.png: 4 bytes of garbage after the PNG's IEND; generating it again" "$ERR")" 1
check "$CASE: the complete one skipped" "$(grep -c 'exists, skipped' "$ERR")" 1
check "$CASE: the complete one untouched" "$(sha256sum <"$O/i-3.png")" "$sum3"
check "$CASE: files" "$(files)" "i-1.png i-2.png i-3.png i-4.png "
all_valid i-1.png i-2.png i-3.png i-4.png
check "$CASE: i-2 carries its own seed" "$(png_params "$O/i-2.png" | tail -n 1 | grep -o 'Seed: [0-9]*')" "Seed: 2"

# ================= the model hash only when a PNG needs it =================
cs hash-lazy
run "${GEN[@]}" -p x -o out.png -q
check "$CASE: a written PNG hashes the model" "$rc $([ -f "$XDG_CACHE_HOME/sdgen/hashes.json" ] && echo cached)" "0 cached"
check "$CASE: Model hash is the file's SHA-256" "$(png_params "$O/out.png" | tail -n 1 | grep -o 'Model hash: [0-9a-f]*')" \
  "Model hash: $(sha256sum "$MODEL" | cut -c1-10)"
rm -rf "$XDG_CACHE_HOME"
run "${GEN[@]}" -p x -o out.png -q --skip-existing
check "$CASE: nothing to write, nothing hashed" "$rc $([ -e "$XDG_CACHE_HOME/sdgen/hashes.json" ] && echo cached || echo none)" "0 none"
run "${GEN[@]}" -p x -o other.png --clip-skip 3
check "$CASE: refused after loading, nothing hashed" "$rc $([ -e "$XDG_CACHE_HOME/sdgen/hashes.json" ] && echo cached || echo none)" "2 none"
XDG_CACHE_HOME=$FX/target.txt run "${GEN[@]}" -p x -o uncached.png -q
check "$CASE: cache not writable: hash still in the PNG" "$rc $(png_params "$O/uncached.png" | tail -n 1 | grep -o 'Model hash: [0-9a-f]*')" \
  "0 Model hash: $(sha256sum "$MODEL" | cut -c1-10)"

# ================= closed and broken pipes =================
cs epipe
mkfifo "$TMP/pipe"
exec 4<>"$TMP/pipe" # a reader for the open below; closed once sdgen holds the write end
(cd "$O" && exec "$SDGEN" "${GEN[@]}" -p x --batch-count 3 -o 'p-{index}.png' -q >"$TMP/pipe" 2>"$TMP/log/epipe.err" 4<&-) &
pid=$!
for _ in $(seq 600); do [ "$(readlink "/proc/$pid/fd/1" 2>/dev/null)" = "$TMP/pipe" ] && break; sleep 0.05; done
exec 4<&-
wait "$pid"
rc=$?
ERR=$TMP/log/epipe.err
sane "$ERR"
check "$CASE: stdout's reader gone: exit code" "$rc" 0
check "$CASE: all 3 images written" "$(files)" "p-1.png p-2.png p-3.png "
all_valid p-1.png p-2.png p-3.png
cs stdout-closed
(cd "$O" && exec "$SDGEN" "${GEN[@]}" -p x --batch-count 2 -o 'c-{index}.png' -q >&- 2>"$TMP/log/closed.err")
rc=$?
check "$CASE: exit code" "$rc" 0
check "$CASE: files" "$(files)" "c-1.png c-2.png "
all_valid c-1.png c-2.png
check "$CASE: the hash cache is intact JSON" "$(head -c 1 "$XDG_CACHE_HOME/sdgen/hashes.json")" "{"
cs stderr-closed
(cd "$O" && exec "$SDGEN" "${GEN[@]}" -p x --batch-count 2 -o 'e-{index}.png' -v 2>&- >/dev/null)
rc=$?
check "$CASE: exit code" "$rc" 0
all_valid e-1.png e-2.png

# ================= file size limit, stale temporary files =================
cs ulimit-f
(cd "$O" && ulimit -f 4 && exec "$SDGEN" "${GEN[@]}" -p x -o big.png >"$TMP/log/$CASE.out" 2>"$TMP/log/$CASE.err")
rc=$?
ERR=$TMP/log/$CASE.err
sane "$ERR"
check "$CASE: exit code (not 153, SIGXFSZ)" "$rc" 2
check "$CASE: message" "$(grep -c "big.png: cannot write [0-9]* bytes: file too large for the process's file size limit (ulimit -f)" "$ERR")" 1
check "$CASE: nothing left, not even a temporary file" "$(files)" ""
cs stale-temps
sh -c 'exit 0' &
dead=$!
wait "$dead"
stale=".img.png.tmp-$dead-0123abcd"
keep=(".img.png.tmp-$$-0123abcd" ".img.png.tmp-$dead-0123ABCD" ".img.png.tmp-$dead-0123abcd.bak" "img.png.tmp-$dead-0123abcd"
  ".new.png.tmp-$dead-0123abcd" ".other")
for f in "$stale" "${keep[@]}"; do printf 'partial' >"$O/$f"; touch -d '1 hour ago' "$O/$f"; done
touch -d '1 hour' "$O/.new.png.tmp-$dead-0123abcd" # newer than the run
mkdir "$O/.dir.png.tmp-$dead-0123abcd"
touch -d '1 hour ago' "$O/.dir.png.tmp-$dead-0123abcd"
run "${GEN[@]}" -p x -o img.png
check "$CASE: exit code" "$rc" 0
check "$CASE: message" "$(grep -c "removed 1 stale temporary file of a killed sdgen run ($stale)" "$ERR")" 1
check "$CASE: only the dead writer's old file removed" "$(files)" \
  "$(printf '%s\n' "${keep[@]}" ".dir.png.tmp-$dead-0123abcd" img.png | LC_ALL=C sort | tr '\n' ' ')"

# ================= control characters in messages =================
cs esc-batch-strings
MAXL=4
printf '%s\n' '{"prompt": "x", "sampler": "\u001b[31mred"}' '{"prompt": "x", "rng": "\u009b2J"}' \
  '{"prompt": "x", "output": "a\nb.png"}' >"$FX/esc.jsonl"
expect 1 'esc.jsonl:1: unknown sampler "\x1b[31mred"' "${PRE[@]}" --prompts "$FX/esc.jsonl"
check "$CASE: C1 escaped" "$(grep -c 'esc.jsonl:2: unknown rng "\\u009b2J"' "$ERR")" 1
check "$CASE: newline in output refused" "$(grep -c 'esc.jsonl:3: a\\nb.png: the output path holds a control character' "$ERR")" 1
cs esc-init-image
MAXL=2
printf '%s\n' '{"prompt": "x", "init_image": "no\u001b[2Jpe.png", "strength": 1}' >"$FX/esc-init.jsonl"
run "${GEN[@]}" -q --prompts "$FX/esc-init.jsonl" -o 'img-{index}.png'
check "$CASE: exit code" "$rc" 1
check "$CASE: path escaped" "$(grep -c 'esc-init.jsonl:1: no\\x1b\[2Jpe.png: ' "$ERR")" 1
cs esc-cli
expect 2 '--sampler: unknown sampler "\x1b[2J"' "${PRE[@]}" -p x -o out.png --sampler $'\e[2J'
cs esc-prompts-path
expect 2 'b\x1b]0;title\x07.txt' "${PRE[@]}" --prompts $'b\e]0;title\a.txt'
cs esc-prompt-in-name
run "${GEN[@]}" -q -p $'red \e[31m apple \xc2\x9b' -o '{prompt}.png'
check "$CASE: exit code" "$rc" 0
check "$CASE: control characters never reach the file name" "$(files)" "red_[31m_apple.png "

# ================= an oversized --prompts file =================
cs prompts-huge-file
truncate -s 1G "$FX/huge.txt"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f %M -o "$TMP/log/rss" "$SDGEN" "${PRE[@]}" --prompts "$FX/huge.txt" -o out.png 2>"$TMP/log/$CASE.err"
  rc=$?
  rss_kb=$(tail -n 1 "$TMP/log/rss")
  check "$CASE: peak memory below 200 MB (nothing read)" "$([ "$rss_kb" -lt 200000 ] && echo yes || echo "no: $rss_kb kB")" yes
else
  bad "$CASE: /usr/bin/time (GNU time) is needed to measure the peak memory"
  "$SDGEN" "${PRE[@]}" --prompts "$FX/huge.txt" -o out.png 2>"$TMP/log/$CASE.err"
  rc=$?
fi
check "$CASE: exit code" "$rc" 2
check "$CASE: refused from its size" "$(grep -c 'huge.txt: file too large (1073741824 bytes, max 268435456)' "$TMP/log/$CASE.err")" 1
rm -f "$FX/huge.txt"
cs prompts-huge-pipe
head -c 300M /dev/zero | "$SDGEN" "${PRE[@]}" --prompts /dev/stdin -o out.png 2>"$TMP/log/$CASE.err"
rc=$?
check "$CASE: exit code" "$rc" 2
check "$CASE: refused at the cap" "$(grep -c '/dev/stdin: file too large (max 268435456 bytes)' "$TMP/log/$CASE.err")" 1

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
