#!/usr/bin/env bash
# test_tokenize_cli.sh — `sdgen tokenize`: the reference 77 ids, SD 1.x / 2.x padding,
# vocabulary from --vocab / SDGEN_VOCAB, --chunks after weight parsing, --no-weighting, errors (exit 2,
# one line). Needs $SDGEN (the binary) and $SDGEN_SHARED/clip (the CLIP vocabulary).
set -u
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
VOCAB="$SHARED/clip"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/tokenize-cli
mkdir -p "$TMP"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2' want '$3'"; fi; }

pad() { # pad ID COUNT: COUNT copies of ID, space-separated, with a leading space
  local s="" i
  for ((i = 0; i < $2; i++)); do s="$s $1"; done
  printf '%s' "$s"
}

unset SDGEN_VOCAB
ids="49406 320 1125 539 550 18376 6765 320 4558 525 7496 49407"
out=$("$SDGEN" tokenize --vocab "$VOCAB" "a photo of an astronaut riding a horse on mars")
check "sd1 ids (docs/SEMANTICS.md §2.4 check)" "$out" "$ids$(pad 49407 65)"
out=$("$SDGEN" tokenize --vocab "$VOCAB" --family sd2 "a photo of an astronaut riding a horse on mars")
check "sd2 ids, pad 0" "$out" "$ids$(pad 0 65)"
out=$("$SDGEN" tokenize --family=sd2 --vocab="$VOCAB/bpe_simple_vocab_16e6.txt.gz" "wow! amazing!! (sd2 pads with '!')")
check "sd2 '!' quirk (golden cases.json)" "$out" "49406 2781 0 1370 0 0 263 4159 273 17353 593 262 0 19175 49407$(pad 0 62)"
out=$(SDGEN_VOCAB="$VOCAB/vocab.json" "$SDGEN" tokenize "")
check "empty prompt via SDGEN_VOCAB" "$out" "49406 49407$(pad 49407 75)"
out=$("$SDGEN" tokenize --vocab "$VOCAB/merges.txt" -- "(masterpiece:1.2), [blurry]")
n=$(echo "$out" | wc -w)
check "brackets literal: 77 ids" "$n" "77"
case "$out" in "49406 263 "*) ok "brackets literal: '(' is a token";; *) bad "brackets literal: $out";; esac

# over-long: truncated, EOS last, note on stderr
long=$(for i in $(seq 90); do printf 'red, '; done)
out=$("$SDGEN" tokenize --vocab "$VOCAB" "$long" 2>"$TMP/err")
check "truncated: 77 ids" "$(echo "$out" | wc -w)" "77"
check "truncated: EOS last" "$(echo "$out" | awk '{print $77}')" "49407"
check "truncated: token 76" "$(echo "$out" | awk '{print $76}')" "736"
grep -q "truncated" "$TMP/err" && ok "truncation note" || bad "no truncation note: $(cat "$TMP/err")"

# --chunks: one line per chunk, weights parsed (brackets removed), note on stderr
out=$("$SDGEN" tokenize --vocab "$VOCAB" --chunks "$long" 2>"$TMP/err")
check "--chunks: 3 lines for 179 tokens" "$(echo "$out" | wc -l)" "3"
check "--chunks: 77 ids per line" "$(echo "$out" | awk '{print NF}' | sort -u)" "77"
grep -q "chunks" "$TMP/err" && ok "chunking note" || bad "no chunking note: $(cat "$TMP/err")"
plain=$("$SDGEN" tokenize --vocab "$VOCAB" "a red apple")
out=$("$SDGEN" tokenize --vocab "$VOCAB" --chunks "(a red:1.3) [apple]")
check "--chunks removes the weight syntax" "$out" "$plain"
out=$("$SDGEN" tokenize --vocab "$VOCAB" --chunks "a BREAK red apple")
check "--chunks BREAK: 2 lines" "$(echo "$out" | wc -l)" "2"
lit=$("$SDGEN" tokenize --vocab "$VOCAB" "(a red:1.3) [apple]")
out=$("$SDGEN" tokenize --vocab "$VOCAB" --chunks --no-weighting "(a red:1.3) [apple]")
check "--chunks --no-weighting = literal" "$out" "$lit"
out=$("$SDGEN" tokenize --vocab "$VOCAB" --family sd2 --chunks "$long" | sed -n 3p)
check "--chunks sd2: padding 0 after EOS" "$(echo "$out" | awk '{print $NF}')" "0"

# errors: exit 2, one line on stderr
expect_fail() { # NAME PATTERN ARGS...
  local name=$1 pat=$2
  shift 2
  "$SDGEN" tokenize "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -q -- "$pat" "$TMP/err" && [ ! -s "$TMP/out" ]; then ok "$name"
  else bad "$name: rc=$rc lines=$lines stderr=$(cat "$TMP/err")"; fi
}
expect_fail "missing TEXT" "missing TEXT" --vocab "$VOCAB"
expect_fail "unknown option" "unknown option" --vocab "$VOCAB" --bogus x
expect_fail "bad family" "sd1 or sd2" --vocab "$VOCAB" --family sd3 x
expect_fail "two texts" "more than one" --vocab "$VOCAB" a b
expect_fail "--vocab without value" "needs a value" --vocab
expect_fail "missing vocabulary file" "/nonexistent/vocab.json" --vocab /nonexistent/vocab.json x
echo '{"a": 1}' >"$TMP/vocab.json"
expect_fail "vocab.json without merges.txt" "merges.txt" --vocab "$TMP/vocab.json" x
expect_fail "bad weight with --chunks" "bad weight" --vocab "$VOCAB" --chunks "(a:1.2.3)"
SDGEN_VOCAB=/nonexistent "$SDGEN" tokenize x >/dev/null 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -q SDGEN_VOCAB "$TMP/err" && ok "broken SDGEN_VOCAB" || bad "broken SDGEN_VOCAB: rc=$rc $(cat "$TMP/err")"
"$SDGEN" tokenize x >/dev/null 2>"$TMP/err"
rc=$?
if [ "$rc" = 0 ]; then
  ok "vocabulary found in the install data folder"
else
  [ "$rc" = 2 ] && grep -q "looked in" "$TMP/err" && grep -q "bpe_simple_vocab_16e6.txt.gz" "$TMP/err" && ok "no vocabulary: places listed" ||
    bad "no vocabulary: rc=$rc $(cat "$TMP/err")"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
