#!/bin/bash
# make-full-ckpts.sh — generate the full-size random-weight checkpoints of the golden data
# (docs/SEMANTICS.md §14.1) for the tests labelled "full".
#
#   scripts/make-full-ckpts.sh OUT_DIR [sd15] [sd21] [sdxl-base]      (default: sd15 and sd21)
#
# Writes OUT_DIR/sd15.safetensors (2,132,674,926 bytes) and/or OUT_DIR/sd21.safetensors
# (2,607,408,968 bytes) and/or OUT_DIR/sdxl-base.safetensors (6,938,041,176 bytes) with the shared generator tools/mkckpt.c (built into OUT_DIR), using the
# manifests' own dtypes (no 4th argument), then checks the sha256 (docs/SEMANTICS.md §14.1). A file that is
# already there with the right size is kept. Environment: SDGEN_SHARED (default: ../shared beside
# the checkout). Exit status 0 when every requested file is in place.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
shared="${SDGEN_SHARED:-$here/../shared}"
out="${1:?usage: make-full-ckpts.sh OUT_DIR [sd15] [sd21]}"
shift
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(sd15 sd21)

mkdir -p "$out"
mk="$out/mkckpt"
if [ ! -x "$mk" ] || [ "$shared/tools/mkckpt.c" -nt "$mk" ]; then
    cc -O2 -o "$mk.tmp.$$" "$shared/tools/mkckpt.c" -lcjson -lm
    mv "$mk.tmp.$$" "$mk"
fi

for name in "${models[@]}"; do
    case "$name" in
        sd15) size=2132674926; sha=ec464141f7982cb28996ab1e184bc5619a761b5d94bb2abfd2639404d731244c ;;
        sd21) size=2607408968; sha=bb1534a5302053a572e0273a9bf78db860933ed98a774e081e3ec6f319d8d4f3 ;;
        sdxl-base) size=6938041176; sha=191cb15db668210d2bb7d780c936b8bb24beadb8cbc0dcba6285b9fdc34dcb0d ;;
        *) echo "make-full-ckpts.sh: unknown model '$name' (sd15, sd21, sdxl-base)" >&2; exit 2 ;;
    esac
    f="$out/$name.safetensors"
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$size" ]; then
        echo "$f: present"
        continue
    fi
    echo "$f: generating (about 30 s)"
    tmp="$f.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    "$mk" "$shared/golden/manifests/$name.json" "$tmp" 0
    got="$(sha256sum "$tmp" | cut -d' ' -f1)"
    if [ "$got" != "$sha" ]; then
        echo "$f: sha256 $got, expected $sha" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv "$tmp" "$f"
    trap - EXIT
    echo "$f: ok"
done
