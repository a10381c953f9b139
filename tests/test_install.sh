#!/usr/bin/env bash
# test_install.sh — the installed library, as a program outside the project sees it.
#   1. Configure a fresh build with CMAKE_INSTALL_PREFIX = a temporary folder (the data folder the library
#      searches is fixed at configure time), build the library and the command, `cmake --install` it there.
#   2. The prefix holds bin/sdgen, lib/libsdgen.a, include/sdgen.h and no other header, lib/pkgconfig/sdgen.pc,
#      share/sdgen/models/demo.safetensors (the repository's file) and, when the shared reference data has
#      it, the CLIP vocabulary in share/sdgen/clip.
#   3. examples/txt2img.c compiles and links with nothing but `pkg-config --cflags --static --libs sdgen`
#      (-Wall -Wextra -Werror), runs with no arguments in an empty folder, says it used the installed demo
#      model, and writes txt2img.png: a complete PNG of 64x64 (the demo model's size).
#   4. The installed `sdgen -p PROMPT --seed 42` writes the same file byte for byte: the same pixels (the
#      same IDAT stream) and the same A1111 parameters text.
#   5. With a model that does not exist the example fails with the library's message naming the file.
# The build under test mirrors the one running the tests (ASan+UBSan when SDGEN_SANITIZE is ON).
set -u
export LC_ALL=C
SRC=${SDGEN_SOURCE_DIR:?SDGEN_SOURCE_DIR must name the source tree}
SHARED=${SDGEN_SHARED:-$SRC/../shared}
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/install
rm -rf "$TMP"
mkdir -p "$TMP/run" "$TMP/cache"
PREFIX=$TMP/prefix
BUILD=$TMP/build
unset SDGEN_VOCAB SDGEN_MODEL
export XDG_CACHE_HOME=$TMP/cache # the model-hash cache stays here
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit $?; }

# 1. configure, build, install
cfg=(-DCMAKE_INSTALL_PREFIX="$PREFIX" -DSDGEN_SHARED_DIR="$SHARED")
if [ "${SDGEN_SANITIZE:-OFF}" = ON ]; then
  cfg+=(-DCMAKE_BUILD_TYPE=Debug -DSDGEN_SANITIZE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g")
else
  cfg+=(-DCMAKE_BUILD_TYPE=Release)
fi
if ! cmake -S "$SRC" -B "$BUILD" "${cfg[@]}" >"$TMP/configure.log" 2>&1 ||
  ! cmake --build "$BUILD" -j2 --target libsdgen sdgen >"$TMP/build.log" 2>&1 ||
  ! cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1; then
  bad "configure/build/install failed"
  tail -n 30 "$TMP"/*.log >&2
  finish
fi
ok "configure, build and cmake --install into $PREFIX"

# 2. what was installed
for f in bin/sdgen lib/libsdgen.a include/sdgen.h lib/pkgconfig/sdgen.pc share/sdgen/models/demo.safetensors; do
  if [ -f "$PREFIX/$f" ]; then ok "installed $f"; else bad "$f is not installed"; fi
done
check "the only installed header" "$(cd "$PREFIX/include" && find . -type f | sort | tr '\n' ' ')" "./sdgen.h "
if cmp -s "$SRC/models/demo.safetensors" "$PREFIX/share/sdgen/models/demo.safetensors"; then
  ok "demo model installed unchanged"
else
  bad "share/sdgen/models/demo.safetensors differs from models/demo.safetensors"
fi
if [ -f "$SHARED/clip/vocab.json" ]; then
  for f in bpe_simple_vocab_16e6.txt.gz vocab.json merges.txt; do
    if cmp -s "$SHARED/clip/$f" "$PREFIX/share/sdgen/clip/$f"; then ok "CLIP $f installed"; else bad "CLIP $f not installed"; fi
  done
else
  echo "note: no CLIP vocabulary in $SHARED/clip: none is installed"
  if [ -e "$PREFIX/share/sdgen/clip/vocab.json" ]; then bad "a vocabulary was installed from nowhere"; else ok "no vocabulary installed"; fi
fi

# 3. the example, built with pkg-config only
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
libs=$(pkg-config --static --libs sdgen 2>&1)
for want in -lsdgen -lopenblas -lcjson -lz -lm -fopenmp; do
  case " $libs " in *" $want "*) ok "pkg-config --static --libs has $want" ;; *) bad "pkg-config --static --libs lacks $want: $libs" ;; esac
done
flags=$(pkg-config --cflags --static --libs sdgen)
# shellcheck disable=SC2086 # the flags are words
if cc -std=c11 -Wall -Wextra -Werror -o "$TMP/txt2img" "$SRC/examples/txt2img.c" $flags 2>"$TMP/cc.log"; then
  ok "examples/txt2img.c builds against the installed library"
else
  bad "examples/txt2img.c does not build: $(head -c 2000 "$TMP/cc.log")"
  finish
fi

# The sdgen command picks OpenBLAS's kernels itself (OPENBLAS_CORETYPE from the CPU's features, src/main.c);
# a program linking the library gets OpenBLAS's own choice. Different kernels round differently, so for the
# byte comparison the command is told to keep OpenBLAS's choice too (an OPENBLAS_CORETYPE already set in
# the environment applies to both).
cd "$TMP/run" || exit 1
"$TMP/txt2img" >out.txt 2>err.txt
rc=$?
check "txt2img exit code" "$rc" 0
check "txt2img used the installed demo model" "$(cat out.txt)" \
  "wrote txt2img.png with $PREFIX/share/sdgen/models/demo.safetensors"
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" err.txt; then bad "sanitizer report from txt2img"; sed 's/^/     | /' err.txt >&2; fi
if [ -f txt2img.png ] && why=$(png_valid txt2img.png); then ok "txt2img.png is a complete PNG"; else bad "txt2img.png: ${why:-missing}"; fi
check "txt2img.png size" "$(_be32 txt2img.png 16)x$(_be32 txt2img.png 20)" "64x64"

# 4. the command, same prompt and seed
SDGEN_NO_BLAS_SELECT=1 "$PREFIX/bin/sdgen" -q -p "a large red circle on the left, blue background" --seed 42 \
  -o x.png >/dev/null 2>cli-err.txt
check "sdgen exit code" "$?" 0
# idat FILE: the concatenated IDAT chunks (the compressed pixels), as hex
idat() {
  local f=$1 pos=8 size len type
  size=$(stat -c %s "$f")
  while [ "$pos" -lt "$size" ]; do
    len=$(_be32 "$f" "$pos")
    type=$(tail -c +$((pos + 5)) "$f" | head -c 4)
    [ "$type" = IDAT ] && tail -c +$((pos + 9)) "$f" | head -c "$len" | od -An -tx1 | tr -d ' \n'
    pos=$((pos + 12 + len))
  done
}
if [ -f x.png ] && [ -f txt2img.png ]; then
  a=$(idat txt2img.png)
  b=$(idat x.png)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "the same pixels (IDAT) as sdgen -p ... --seed 42"; else bad "pixels differ from the command's"; fi
  check "the same parameters text as the command" "$(png_params txt2img.png)" "$(png_params x.png)"
  if cmp -s txt2img.png x.png; then ok "txt2img.png and sdgen's x.png are byte-identical"; else bad "txt2img.png differs from x.png"; fi
  echo "parameters: $(png_params txt2img.png | tr '\n' '|')"
else
  bad "an output is missing"
fi

# the optional arguments: another prompt and output file
"$TMP/txt2img" "a small green square at the bottom" other.png >/dev/null 2>&1
check "txt2img PROMPT OUT exit code" "$?" 0
check "txt2img PROMPT OUT prompt" "$(png_params other.png | head -n 1)" "a small green square at the bottom"

# 5. a missing model: the library's message, naming the file
SDGEN_MODEL=/nonexistent-dir/none.safetensors "$TMP/txt2img" >out2.txt 2>err2.txt
check "missing model exit code" "$?" 1
check "missing model message" "$(cat err2.txt)" \
  "txt2img: /nonexistent-dir/none.safetensors: cannot open: No such file or directory"

finish
