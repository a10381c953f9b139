# pngcheck.sh — PNG helpers sourced by tests/test_batch_cli.sh and tests/test_interrupt.sh (bash +
# coreutils + gzip only; no image library at test time).
#   png_valid FILE     0 when FILE is a complete PNG: the 8-byte signature, then chunks whose lengths
#                      fit the file and whose CRC-32s match, starting with IHDR and ending with IEND
#                      exactly at the end of the file (PNG spec §5); prints the reason otherwise.
#   png_params FILE    prints the text of the `parameters` tEXt chunk (A1111 infotext).

# _be32 FILE OFFSET: the big-endian 32-bit number at OFFSET
_be32() { od -An -tu1 -j "$2" -N4 "$1" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }'; }
# _crc FILE OFFSET COUNT: CRC-32 of COUNT bytes at OFFSET, as a decimal number (gzip's trailer holds it)
_crc() {
  tail -c +$(($2 + 1)) "$1" | head -c "$3" | gzip -c | tail -c 8 | head -c 4 |
    od -An -tu1 | awk '{ print $4 * 16777216 + $3 * 65536 + $2 * 256 + $1 }'
}

png_valid() {
  local f=$1 size pos=8 len type k=0
  size=$(stat -c %s "$f") || return 1
  if [ "$size" -lt 57 ] || [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
    echo "$f: no PNG signature"
    return 1
  fi
  while :; do
    if [ $((size - pos)) -lt 12 ]; then echo "$f: truncated (chunk header at $pos)"; return 1; fi
    len=$(_be32 "$f" "$pos")
    if [ $((pos + 12 + len)) -gt "$size" ]; then echo "$f: chunk at $pos runs past the end"; return 1; fi
    type=$(tail -c +$((pos + 5)) "$f" | head -c 4)
    if [ $k = 0 ] && [ "$type" != IHDR ]; then echo "$f: first chunk is $type, not IHDR"; return 1; fi
    if [ "$(_crc "$f" $((pos + 4)) $((len + 4)))" != "$(_be32 "$f" $((pos + 8 + len)))" ]; then
      echo "$f: CRC mismatch in chunk $type at $pos"
      return 1
    fi
    pos=$((pos + 12 + len))
    k=$((k + 1))
    [ "$type" = IEND ] && break
  done
  if [ "$pos" != "$size" ]; then echo "$f: $((size - pos)) bytes after IEND"; return 1; fi
  return 0
}

png_params() {
  local f=$1 off len
  off=$(grep -boa 'tEXtparameters' "$f" | head -n 1 | cut -d: -f1)
  [ -n "$off" ] || return 1
  len=$(_be32 "$f" $((off - 4)))
  tail -c +$((off + 4 + 11 + 1)) "$f" | head -c $((len - 11))
}
