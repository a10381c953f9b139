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
