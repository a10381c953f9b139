# fixtures.sh — byte-level fixture writers sourced by tests/test_bad_inputs.sh and
# tests/test_robust_inputs.sh (bash + coreutils + gzip only). png_chunk uses the caller's $FX folder
# for one scratch file.
#   le64 N                 N as 8 little-endian bytes (the safetensors header length)
#   be32 N                 N as 4 big-endian bytes (PNG chunk lengths)
#   mkst FILE HEADER N     a safetensors file with this JSON header and N zero bytes of data
#   crc32be                CRC-32 (the PNG/zlib one) of stdin as 4 big-endian bytes (gzip's trailer
#                          holds it little-endian)
#   png_chunk TYPE FILE    a PNG chunk: length, type, the file's bytes as data, CRC over type + data
#   linkfolder DIR         a copy of the diffusers folder $CFG made of symlinks, so single files can be
#                          replaced
# and the refusal checker both use (expect, sanitizer_report; at the end).
le64() {
  local s="" i
  for i in 0 1 2 3 4 5 6 7; do s="$s\\$(printf '%03o' $((($1 >> (8 * i)) & 255)))"; done
  printf "$s"
}
be32() {
  local s="" i
  for i in 3 2 1 0; do s="$s\\$(printf '%03o' $((($1 >> (8 * i)) & 255)))"; done
  printf "$s"
}
mkst() { { le64 ${#2}; printf '%s' "$2"; head -c "$3" /dev/zero; } >"$1"; }
crc32be() {
  local b
  b=$(gzip -c | tail -c 8 | head -c 4 | od -An -tx1 | tr -s ' \n' ' ')
  set -- $b
  printf "\\x$4\\x$3\\x$2\\x$1"
}
png_chunk() {
  be32 "$(stat -c %s "$2")"
  { printf '%s' "$1"; cat "$2"; } >"$FX/.chunk"
  cat "$FX/.chunk"
  crc32be <"$FX/.chunk"
}
linkfolder() {
  local d sub f
  mkdir -p "$1"
  for d in "$CFG"/*; do
    sub=$(basename "$d")
    if [ -d "$d" ]; then
      mkdir -p "$1/$sub"
      for f in "$d"/*; do ln -s "$f" "$1/$sub/"; done
    else
      ln -s "$d" "$1/"
    fi
  done
}

# ---- the refusal checker shared by the bad-input scripts ----
# sanitizer_report FILE: true when FILE holds a sanitizer report or a crash message
sanitizer_report() { grep -qE "AddressSanitizer|LeakSanitizer|runtime error|Segmentation|Aborted" "$1"; }
# expect RC SUBSTRING ARGS...: a refusal. Runs the script's `run ARGS` (sdgen in the case's output folder
# $O, stderr in $TMP/log/$CASE.err) and asserts: not killed by a signal or the time limit, exit RC, no
# sanitizer report, SUBSTRING in stderr, 1..$MAXL lines of it, no file in $O made or changed, no temporary
# file left. Counts in the script's $cases and reports through its ok/bad.
expect() {
  local want=$1 pat=$2
  shift 2
  cases=$((cases + 1))
  local before after err=$TMP/log/$CASE.err
  before=$(cd "$O" && find . -type f -exec sha256sum {} + | sort)
  run "$@"
  local rc=$? f=0
  after=$(cd "$O" && find . -type f -exec sha256sum {} + | sort)
  [ "$rc" -lt 128 ] || { bad "$CASE: crashed or hung (exit $rc)"; f=1; }
  [ "$rc" = "$want" ] || { bad "$CASE: exit $rc, want $want"; f=1; }
  if sanitizer_report "$err"; then bad "$CASE: sanitizer report"; f=1; fi
  grep -qF -- "$pat" "$err" || { bad "$CASE: stderr lacks \"$pat\""; f=1; }
  local nl
  nl=$(grep -c . "$err")
  [ "$nl" -ge 1 ] && [ "$nl" -le "$MAXL" ] || { bad "$CASE: $nl stderr lines, want 1..$MAXL"; f=1; }
  [ "$before" = "$after" ] || { bad "$CASE: files changed in the output folder: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"; f=1; }
  if [ -n "$(find "$O" -name '*.tmp*' -o -name '*.png.*')" ]; then bad "$CASE: temporary file left"; f=1; fi
  if [ $f = 0 ]; then
    ok
    echo "ok   $CASE (exit $rc): $(head -c 240 "$err" | head -n 1)"
  else
    sed 's/^/     | /' "$err" | head -n 5 >&2
  fi
}
