#!/usr/bin/env bash
# test_lora_cli.sh — LoRAs and textual-inversion embeddings through the CLI (docs/LORA.md), on the tiny
# SD 1.x and SDXL models of the reference data. Tensors are compared as the .npy files --dump-dir writes
# (byte for byte where the runs must agree).
#   1. <lora:NAME:W> in the prompt = in the negative prompt = --lora PATH:W = a bare --lora NAME:W; the
#      folder is --lora-dir or loras/ beside the model; W defaults to 1; two LoRAs; the PNG keeps the tag in
#      its prompt and carries A1111's `Lora hashes: "name: <12 hex of sha256(data after the header)>"`.
#   2. JSONL batch: items with and without LoRAs and one with a missing LoRA: that item fails (exit 1), the
#      others are written, and the item without a LoRA after one with a LoRA equals a run without any LoRA.
#   3. Textual inversion: an embedding whose vectors are the token-embedding rows of "cat" (1 vector) or of
#      "red apple" (2) gives exactly the text embedding of those words (SDXL: clip_l + clip_g rows give the
#      same context and pooled vector); a 2-vector word that does not fit in the chunk's last position
#      starts the next chunk (A1111's count); a .pt embedding is refused.
#   4. Bad LoRA files and tags: exit 2, no PNG, a message naming the file/tag and the problem.
#   5. SDXL: a generated kohya LoRA (real key names, mkckpt values) changes both text encoders and the U-Net;
#      te2-only and U-Net-only files change exactly their part; an SDXL LoRA on SD 1.x is refused. SD 2.x
#      (F16 file, OpenCLIP text encoder): after a LoRA item, a plain item equals a run without any LoRA,
#      with --weights f16 and f32; the LoRA item in f16 mode (F16 merged copies) is within 0.02 of f32 mode, and
#      without a LoRA the two modes are identical.
#   6. --lora-apply fly (low-rank products at each use, no weight copies): the batch of section 2 again —
#      items without a LoRA after LoRA items equal a run without any LoRA byte for byte, a LoRA item equals
#      the same LoRA after a plain item, and is within 1e-4 of the merged run; the same on SD 2.x (F16 file,
#      OpenCLIP q/k/v row blocks); a bad --lora-apply word and a shape mismatch in fly mode exit 2.
set -u
export LC_ALL=C
SDGEN=${SDGEN:?SDGEN must name the sdgen binary}
SHARED=${SDGEN_SHARED:-../shared}
[ -d "$SHARED/golden" ] || { echo "SKIP: the reference data is not at $SHARED (set SDGEN_SHARED)"; exit 77; }
SRC=${SDGEN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
G="$SHARED/golden/models"
VOCAB="$SHARED/clip"
TMP=${SDGEN_TEST_TMP:-/tmp/sdgen-test}/lora-cli
rm -rf "$TMP"
mkdir -p "$TMP/m/loras" "$TMP/m/embeddings" "$TMP/other" "$TMP/bad" "$TMP/b"
unset SDGEN_VOCAB SDGEN_MODEL
# shellcheck source=bad_inputs/pngcheck.sh
. "$SRC/tests/bad_inputs/pngcheck.sh"

# shellcheck source=checks.sh
. "$SRC/tests/checks.sh"
same() { if cmp -s "$2" "$3"; then ok "$1"; else bad "$1: $2 and $3 differ"; fi; }
differ() { if cmp -s "$2" "$3"; then bad "$1: $2 and $3 are equal"; else ok "$1"; fi; }

ln -s "$G/tiny-sd1.safetensors" "$TMP/m/tiny.safetensors"
cp "$G/lora-kohya-tiny-sd1.safetensors" "$TMP/m/loras/kohya.safetensors"
cp "$G/lora-diffusers-tiny-sd1.safetensors" "$TMP/m/loras/diff.safetensors"
cp "$G/lora-kohya-tiny-sd1.safetensors" "$TMP/other/k2.safetensors"
M="$TMP/m/tiny.safetensors"
BASEV=(--overwrite -m "$M" --vocab "$VOCAB" -W 64 -H 64 --steps 2 --seed 42 --sampler ddim)
BASE=(-q "${BASEV[@]}")
P="a red apple on a wooden table"

# gen NAME ARGS...: one image into $TMP/NAME.png with dumps in $TMP/NAME/
gen() {
  local name=$1
  shift
  "$SDGEN" "${BASE[@]}" -o "$TMP/$name.png" --dump-dir "$TMP/$name" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  local rc=$?
  [ "$rc" = 0 ] || { bad "$name: exit $rc: $(head -c 400 "$TMP/$name.err")"; return 1; }
  grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$TMP/$name.err" && bad "$name: sanitizer report"
  return 0
}

# ---- 1. naming LoRAs ----
gen none -p "$P"
gen tag -p "$P <lora:kohya:0.8>"
gen neg -p "$P" -n "<lora:kohya:0.8>"
gen opt -p "$P" --lora "$G/lora-kohya-tiny-sd1.safetensors:0.8"
gen bare -p "$P" --lora "kohya:0.8"
gen dir -p "$P <lora:k2:0.8>" --lora-dir "$TMP/other"
gen w1tag -p "$P <lora:kohya>"
gen w1opt -p "$P" --lora "$G/lora-kohya-tiny-sd1.safetensors"
gen two -p "<lora:diff:1> $P <lora:kohya:0.8>"
gen twoopt -p "$P" --lora "$TMP/m/loras/diff.safetensors" --lora "$TMP/m/loras/kohya.safetensors:0.8"
for f in text_emb_cond unet0_out image_float; do
  differ "tag changes $f" "$TMP/none/$f.npy" "$TMP/tag/$f.npy"
  same "--lora PATH:W = tag ($f)" "$TMP/tag/$f.npy" "$TMP/opt/$f.npy"
  same "tag in the negative prompt = tag ($f)" "$TMP/tag/$f.npy" "$TMP/neg/$f.npy"
  same "--lora NAME:W = tag ($f)" "$TMP/tag/$f.npy" "$TMP/bare/$f.npy"
  same "--lora-dir = tag ($f)" "$TMP/tag/$f.npy" "$TMP/dir/$f.npy"
  same "default weight 1 ($f)" "$TMP/w1tag/$f.npy" "$TMP/w1opt/$f.npy"
  same "two LoRAs, tags = options ($f)" "$TMP/two/$f.npy" "$TMP/twoopt/$f.npy"
done
differ "weight 1 differs from 0.8" "$TMP/tag/unet0_out.npy" "$TMP/w1tag/unet0_out.npy"
differ "two LoRAs differ from one" "$TMP/tag/unet0_out.npy" "$TMP/two/unet0_out.npy"
same "tags are removed before tokenizing" "$TMP/none/tokens_cond.npy" "$TMP/tag/tokens_cond.npy"
# A1111's <lora:NAME:TE:UNET>: the text encoder at TE, the U-Net at UNET
gen teonly -p "$P <lora:kohya:0.8:0>"
gen unetonly -p "$P <lora:kohya:0:0.8>"
gen named -p "$P <lora:kohya:unet=0.8:te=0>"
same "<lora:kohya:0.8:0>: the text embedding of <lora:kohya:0.8>" "$TMP/tag/text_emb_cond.npy" "$TMP/teonly/text_emb_cond.npy"
differ "<lora:kohya:0.8:0>: another first U-Net output than <lora:kohya:0.8>" "$TMP/tag/unet0_out.npy" "$TMP/teonly/unet0_out.npy"
same "<lora:kohya:0:0.8>: the text embedding without a LoRA" "$TMP/none/text_emb_cond.npy" "$TMP/unetonly/text_emb_cond.npy"
differ "<lora:kohya:0:0.8>: the U-Net is patched" "$TMP/none/unet0_out.npy" "$TMP/unetonly/unet0_out.npy"
for f in text_emb_cond unet0_out image_float; do
  same "unet=0.8:te=0 = 0:0.8 ($f)" "$TMP/unetonly/$f.npy" "$TMP/named/$f.npy"
done

# the infotext: prompt with its tag, and A1111's Lora hashes field
hash12() { # sha256 of the safetensors data after the 8-byte length and the header, first 12 hex digits
  local n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1" | sha256sum | cut -c1-12
}
hk=$(hash12 "$G/lora-kohya-tiny-sd1.safetensors")
hd=$(hash12 "$G/lora-diffusers-tiny-sd1.safetensors")
text=$(png_params "$TMP/tag.png")
[ "$(printf '%s\n' "$text" | head -n 1)" = "$P <lora:kohya:0.8>" ] && ok "infotext prompt keeps the tag" ||
  bad "infotext prompt: $(printf '%s\n' "$text" | head -n 1)"
case "$text" in *", Lora hashes: \"kohya: $hk\", "*) ok "Lora hashes field ($hk)" ;; *) bad "no Lora hashes \"kohya: $hk\" in: $text" ;; esac
text=$(png_params "$TMP/two.png")
case "$text" in *"Lora hashes: \"diff: $hd, kohya: $hk\""*) ok "Lora hashes of two LoRAs" ;; *) bad "two LoRAs: $text" ;; esac
text=$(png_params "$TMP/none.png")
case "$text" in *"Lora hashes"*) bad "Lora hashes without a LoRA: $text" ;; *) ok "no Lora hashes without a LoRA" ;; esac

# ---- 2. batch ----
B="$TMP/batch.jsonl"
cat >"$B" <<EOF
{"prompt": "$P <lora:kohya:0.8>", "seed": 42}
{"prompt": "$P", "seed": 42}
{"prompt": "$P", "seed": 42, "loras": ["kohya:0.8"]}
{"prompt": "$P <lora:missing:1>", "seed": 42}
{"prompt": "$P", "seed": 42, "loras": "$G/lora-kohya-tiny-sd1.safetensors:0.8"}
{"prompt": "$P", "seed": 42}
{"prompt": "$P", "seed": 42, "loras": 5}
EOF
"$SDGEN" "${BASE[@]}" --prompts "$B" -o "$TMP/b/{index}.png" --dump-dir "$TMP/bd" >"$TMP/batch.out" 2>"$TMP/batch.err"
rc=$?
[ "$rc" = 1 ] && ok "batch with failing items exits 1" || bad "batch exit $rc: $(cat "$TMP/batch.err")"
grep -qF "batch.jsonl:4: <lora:missing>: no file $TMP/m/loras/missing.safetensors" "$TMP/batch.err" &&
  ok "missing LoRA fails its item, naming line, tag and file" || bad "batch stderr: $(cat "$TMP/batch.err")"
grep -qF "batch.jsonl:7:" "$TMP/batch.err" && grep -qF '"loras" must be a string' "$TMP/batch.err" &&
  ok "bad \"loras\" value fails its item" || bad "batch stderr: $(cat "$TMP/batch.err")"
n=$(find "$TMP/b" -name '*.png' | wc -l)
[ "$n" = 5 ] && ok "5 of 7 batch images written" || bad "$n batch images"
for f in text_emb_cond unet0_out image_float; do
  same "batch item with tag = single run ($f)" "$TMP/tag/$f.npy" "$TMP/bd/1/$f.npy"
  same "batch item after a LoRA item = run without LoRA ($f)" "$TMP/none/$f.npy" "$TMP/bd/2/$f.npy"
  same "batch \"loras\" name = tag ($f)" "$TMP/tag/$f.npy" "$TMP/bd/3/$f.npy"
  same "batch \"loras\" path = tag ($f)" "$TMP/tag/$f.npy" "$TMP/bd/5/$f.npy"
  same "batch item after a failed one = run without LoRA ($f)" "$TMP/none/$f.npy" "$TMP/bd/6/$f.npy"
done

# maxdiff A.npy B.npy: the largest |a - b| of two float32 .npy files ("size" when they do not match)
maxdiff() {
  python3 - "$1" "$2" <<'PYEOF'
import struct, sys
def load(p):
    with open(p, "rb") as f:
        d = f.read()
    hl = struct.unpack("<H", d[8:10])[0]
    return struct.unpack("<%df" % ((len(d) - 10 - hl) // 4), d[10 + hl:])
a, b = load(sys.argv[1]), load(sys.argv[2])
print("%.6g" % max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) and a else "size")
PYEOF
}
# within NAME A.npy B.npy BOUND: 0 < max |a - b| <= BOUND (the runs compute differently but agree)
within() {
  local got
  got=$(maxdiff "$2" "$3")
  if [ "$got" != size ] && awk -v d="$got" -v b="$4" 'BEGIN { exit !(d + 0 > 0 && d + 0 <= b + 0) }'; then
    ok "$1 ($got)"
  else
    bad "$1: max |difference| $got, want 0 < d <= $4"
  fi
}

# ---- 6. on the fly (the batch of section 2 with --lora-apply fly) ----
mkdir -p "$TMP/bf"
"$SDGEN" "${BASE[@]}" --lora-apply fly --prompts "$B" -o "$TMP/bf/{index}.png" --dump-dir "$TMP/bfd" >"$TMP/bf.out" \
  2>"$TMP/bf.err"
rc=$?
[ "$rc" = 1 ] && ok "fly batch with failing items exits 1" || bad "fly batch exit $rc: $(cat "$TMP/bf.err")"
n=$(find "$TMP/bf" -name '*.png' | wc -l)
[ "$n" = 5 ] && ok "fly: 5 of 7 batch images written" || bad "fly: $n batch images"
for f in text_emb_cond unet0_out image_float; do
  differ "fly: the LoRA item changes $f" "$TMP/none/$f.npy" "$TMP/bfd/1/$f.npy"
  same "fly: batch item after a LoRA item = run without LoRA ($f)" "$TMP/none/$f.npy" "$TMP/bfd/2/$f.npy"
  same "fly: batch item after a failed one = run without LoRA ($f)" "$TMP/none/$f.npy" "$TMP/bfd/6/$f.npy"
  same "fly: the LoRA again after a plain item = the first LoRA item ($f)" "$TMP/bfd/1/$f.npy" "$TMP/bfd/3/$f.npy"
  # float32 sums in another order: a few ulps of values up to 3 (measured 2e-6 to 2e-5)
  within "fly: LoRA item within 1e-4 of the merged one ($f)" "$TMP/tag/$f.npy" "$TMP/bfd/1/$f.npy" 1e-4
done

# A line's "lora_apply" sets the mode for that line only, over the command line's --lora-apply: line 1 on
# the fly gives the bits of the --lora-apply fly batch above, line 2 (no key) the merged run's; a bad word
# fails its line only.
printf '{"prompt": "%s <lora:kohya:0.8>", "seed": 42, "lora_apply": "fly"}\n{"prompt": "%s <lora:kohya:0.8>", "seed": 42}\n{"prompt": "%s", "seed": 42, "lora_apply": "fused"}\n' \
  "$P" "$P" "$P" >"$TMP/ba.jsonl"
mkdir -p "$TMP/ba"
"$SDGEN" "${BASE[@]}" --lora-apply merge --prompts "$TMP/ba.jsonl" -o "$TMP/ba/{index}.png" --dump-dir "$TMP/bad" \
  >"$TMP/ba.out" 2>"$TMP/ba.err"
rc=$?
[ "$rc" = 1 ] && ok "lora_apply batch with a bad line exits 1" || bad "lora_apply batch exit $rc: $(cat "$TMP/ba.err")"
grep -q 'ba.jsonl:3: "lora_apply": unknown value "fused" (expected auto|merge|fly)' "$TMP/ba.err" \
  && ok "bad lora_apply names the line, the key and the choices" || bad "lora_apply message: $(cat "$TMP/ba.err")"
for f in text_emb_cond unet0_out image_float; do
  same "\"lora_apply\": \"fly\" on a line = --lora-apply fly ($f)" "$TMP/bfd/1/$f.npy" "$TMP/bad/1/$f.npy"
  same "next line without the key: the command line's merge ($f)" "$TMP/tag/$f.npy" "$TMP/bad/2/$f.npy"
done

# ---- helper files (python3: header + raw little-endian floats) ----
python3 - "$TMP" "$G/tiny-sd1.safetensors" <<'PYEOF'
import json, struct, sys, math
tmp, model = sys.argv[1], sys.argv[2]

def write(path, tensors, meta=None, dup=None):
    """tensors: list of (name, shape, list of floats) as F32. dup: write this raw header text instead."""
    hdr, data = {}, b""
    if meta:
        hdr["__metadata__"] = meta
    for name, shape, vals in tensors:
        b = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(hdr) if dup is None else dup(hdr)
    h += " " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h.encode() + data)

def vals(n, s=0.01):
    return [s * math.sin(i * 0.7 + 1) for i in range(n)]

Q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
def mod(name, r=4, din=64, dout=64, down=None, up=None):
    return [(name + ".lora_down.weight", [r, din], down if down is not None else vals(r * din)),
            (name + ".lora_up.weight", [dout, r], up if up is not None else vals(dout * r)),
            (name + ".alpha", [], [float(r)])]

b = tmp + "/bad/"
write(b + "good.safetensors", mod(Q))
nan = vals(256); nan[37] = float("nan")
write(b + "nan.safetensors", mod(Q, down=nan))
write(b + "shape.safetensors", mod(Q, din=65))
write(b + "rank0.safetensors", [(Q + ".lora_down.weight", [0, 64], []), (Q + ".lora_up.weight", [64, 0], [])])
write(b + "hugerank.safetensors", mod(Q, r=200))
dupmods = mod(Q) + [("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", [4, 64], vals(256))]
write(b + "dup.safetensors", dupmods)
P1, P2 = "lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_input_blocks_1_1_proj_in"
conv = lambda n: [(n + ".lora_down.weight", [4, 32, 1, 1], vals(128)), (n + ".lora_up.weight", [32, 4, 1, 1], vals(128))]
write(b + "dupweight.safetensors", conv(P1) + conv(P2))
write(b + "nothing.safetensors", [("lora_unet_no_such_module.lora_down.weight", [4, 64], vals(256)),
                                   ("lora_unet_no_such_module.lora_up.weight", [64, 4], vals(256))])
write(b + "noup.safetensors", [(Q + ".lora_down.weight", [4, 64], vals(256))])
write(b + "unknown.safetensors", mod(Q) + [("lora_unet_foo.hada_w1_a", [4, 4], vals(16))])
write(b + "xlmeta.safetensors", mod(Q), meta={"ss_base_model_version": "sdxl_base_v1-0"})
write(b + "te2.safetensors", mod(Q) + mod("lora_te2_text_model_encoder_layers_0_self_attn_q_proj"))
with open(b + "good.safetensors", "rb") as f:
    good = f.read()
with open(b + "trunc.safetensors", "wb") as f:
    f.write(good[:len(good) - 100])
with open(b + "old.pt", "wb") as f:
    f.write(b"\x80\x02pickle")

# textual inversion: rows of the model's own token embedding
with open(model, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    t = h["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"]
    assert t["dtype"] == "F32"
    D = t["shape"][1]
    def row(i):
        f.seek(8 + n + t["data_offsets"][0] + 4 * D * i)
        return list(struct.unpack("<%df" % D, f.read(4 * D)))
    e = tmp + "/m/embeddings/"
    write(e + "mycat.safetensors", [("emb_params", [1, D], row(2368))])               # "cat"
    write(e + "redapple.safetensors", [("string_to_param.*", [2, D], row(736) + row(3055))])  # "red apple"
    write(e + "wide.safetensors", [("emb_params", [2, D + 1], vals(2 * (D + 1)))])
    with open(e + "oldemb.pt", "wb") as g:
        g.write(b"\x80\x02pickle")

# SDXL: clip_l / clip_g rows of "cat" from the tiny SDXL model's two token embeddings (F16, copied as stored)
import os
xl = os.path.join(os.path.dirname(model), "tiny-sdxl.safetensors")
with open(xl, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    def raw_row(name, i):
        t = h[name]
        assert t["dtype"] == "F16"
        D = t["shape"][1]
        f.seek(8 + n + t["data_offsets"][0] + 2 * D * i)
        return D, f.read(2 * D)
    dl, rl = raw_row("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", 2368)
    dg, rg = raw_row("conditioner.embedders.1.model.token_embedding.weight", 2368)
hdr = {"clip_g": {"dtype": "F16", "shape": [1, dg], "data_offsets": [0, len(rg)]},
       "clip_l": {"dtype": "F16", "shape": [1, dl], "data_offsets": [len(rg), len(rg) + len(rl)]}}
hs = json.dumps(hdr)
hs += " " * ((8 - len(hs) % 8) % 8)
os.makedirs(tmp + "/xlemb", exist_ok=True)
with open(tmp + "/xlemb/mycat.safetensors", "wb") as g:
    g.write(struct.pack("<Q", len(hs)) + hs.encode() + rg + rl)
PYEOF
[ -f "$TMP/bad/good.safetensors" ] && [ -f "$TMP/m/embeddings/mycat.safetensors" ] || bad "helper files not written"

# ---- 3. textual inversion ----
gen ti_cat -p "a photo of mycat"
gen ti_cat_ref -p "a photo of cat"
same "1-vector embedding = the token it copies (text_emb_cond)" "$TMP/ti_cat_ref/text_emb_cond.npy" "$TMP/ti_cat/text_emb_cond.npy"
gen ti_two -p "a redapple on a table"
gen ti_two_ref -p "a red apple on a table"
same "2-vector embedding = the two tokens it copies (text_emb_cond)" "$TMP/ti_two_ref/text_emb_cond.npy" "$TMP/ti_two/text_emb_cond.npy"
same "2-vector embedding: same image" "$TMP/ti_two_ref/image_float.npy" "$TMP/ti_two/image_float.npy"
gen ti_neg -p "a photo" -n "mycat"
gen ti_neg_ref -p "a photo" -n "cat"
same "embedding in the negative prompt" "$TMP/ti_neg_ref/text_emb_uncond.npy" "$TMP/ti_neg/text_emb_uncond.npy"
gen ti_dir -p "a photo of mycat" --embeddings-dir "$TMP/other"
differ "--embeddings-dir without the file: the word is plain text" "$TMP/ti_cat/text_emb_cond.npy" "$TMP/ti_dir/text_emb_cond.npy"
a73=$(printf 'a %.0s' $(seq 73))
a74=$(printf 'a %.0s' $(seq 74))
"$SDGEN" "${BASEV[@]}" -o "$TMP/c1.png" -p "${a73}redapple" 2>"$TMP/c1.err" >/dev/null
"$SDGEN" "${BASEV[@]}" -o "$TMP/c2.png" -p "${a74}redapple" 2>"$TMP/c2.err" >/dev/null
grep -q "chunks of 75" "$TMP/c1.err" && bad "73 tokens + 2 vectors: more than one chunk" || ok "73 tokens + 2 vectors fit one chunk"
grep -qF "encoded as 2 chunks" "$TMP/c2.err" && ok "74 tokens + 2 vectors: the embedding starts chunk 2" ||
  bad "74 tokens + 2 vectors: $(cat "$TMP/c2.err")"

# ---- 4. bad inputs: exit 2, the message, no PNG ----
# expect NAME WANT_RC MESSAGE_PART ARGS...
expect() {
  local name=$1 want=$2 pat=$3
  shift 3
  rm -f "$TMP/x.png"
  "$SDGEN" "${BASE[@]}" -o "$TMP/x.png" "$@" >"$TMP/x.out" 2>"$TMP/x.err"
  local rc=$?
  if [ "$rc" != "$want" ]; then bad "$name: exit $rc, want $want: $(head -c 300 "$TMP/x.err")"; return; fi
  if [ -n "$pat" ] && ! grep -qF -- "$pat" "$TMP/x.err"; then bad "$name: stderr lacks \"$pat\": $(head -c 400 "$TMP/x.err")"; return; fi
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$TMP/x.err"; then bad "$name: sanitizer report"; return; fi
  if [ "$want" != 0 ] && [ -e "$TMP/x.png" ]; then bad "$name: a PNG was written"; return; fi
  ok "$name"
}
L="$TMP/bad"
Q=lora_te_text_model_encoder_layers_0_self_attn_q_proj
expect "good small LoRA" 0 "" -p x --lora "$L/good.safetensors"
expect "truncated file" 2 "$L/trunc.safetensors" -p x --lora "$L/trunc.safetensors"
expect "NaN in a LoRA" 2 "\"$Q.lora_down.weight\" has a non-finite value (NaN at element 37)" -p x --lora "$L/nan.safetensors"
expect "shape mismatch names key and both shapes" 2 \
  "shape mismatch: \"$Q.lora_down.weight\" has shape [4,65], expected [4,64] for \"cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight\" [64,64]" \
  -p x --lora "$L/shape.safetensors"
expect "rank 0" 2 "rank 0" -p x --lora "$L/rank0.safetensors"
expect "huge rank" 2 "has rank 200, more than the layer it patches" -p x --lora "$L/hugerank.safetensors"
expect "duplicate keys" 2 "duplicate keys: \"$Q.lora_down.weight\" and \"lora_te1_${Q#lora_te_}.lora_down.weight\"" \
  -p x --lora "$L/dup.safetensors"
expect "two spellings of one module" 2 \
  "duplicate keys: \"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight\" and \"lora_unet_input_blocks_1_1_proj_in.lora_down.weight\" patch the same weight \"model.diffusion_model.input_blocks.1.1.proj_in.weight\"" \
  -p x --lora "$L/dupweight.safetensors"
expect "patches nothing" 2 "the LoRA patches nothing in this sd1 model" -p x --lora "$L/nothing.safetensors"
expect "down without up" 2 "\"$Q.lora_down.weight\" has no matching up weight" -p x --lora "$L/noup.safetensors"
expect "unknown keys: one warning line" 0 "1 key not applied (not a LoRA tensor of this sd1 model): \"lora_unet_foo.hada_w1_a\"" \
  -p x --lora "$L/unknown.safetensors"
expect "SDXL metadata on SD 1.x" 2 "a LoRA for sdxl models (ss_base_model_version \"sdxl_base_v1-0\"); the model is sd1" \
  -p x --lora "$L/xlmeta.safetensors"
expect "te2 keys on SD 1.x" 2 "an SDXL LoRA (it patches a second text encoder" -p x --lora "$L/te2.safetensors"
expect "unclosed tag" 2 "LoRA tag \"<lora:kohya:0.8\" has no closing '>'" -p "x <lora:kohya:0.8"
expect "unclosed tag in the negative prompt" 2 "has no closing '>'" -p x -n "<lora:kohya"
expect "missing LoRA by tag" 2 "<lora:nope>: no file $TMP/m/loras/nope.safetensors" -p "x <lora:nope:1>"
expect "missing LoRA by path" 2 "$TMP/none.safetensors" -p x --lora "$TMP/none.safetensors"
cp "$L/old.pt" "$TMP/m/loras/old.pt"
expect "pickle LoRA" 2 "is a PyTorch pickle, which sdgen does not read; convert it to .safetensors" -p "x <lora:old>"
expect "bad tag weight" 2 "the weight \"x\" is not a number" -p "a <lora:kohya:x>"
expect "--lora without a file" 2 "--lora:" -p x --lora ":0.5"
expect "pickle embedding" 2 "embedding \"oldemb\": $TMP/m/embeddings/oldemb.pt is a PyTorch pickle" -p "a oldemb"
expect "embedding of the wrong width" 2 "expected [n, 64] float vectors" -p "a wide photo"
expect "bad --lora-apply" 2 "--lora-apply: expected auto, merge or fly, got \"fused\"" -p x --lora-apply fused
expect "shape mismatch on the fly names key and both shapes" 2 \
  "shape mismatch: \"$Q.lora_down.weight\" has shape [4,65], expected [4,64] for \"cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight\" [64,64]" \
  -p x --lora-apply fly --lora "$L/shape.safetensors"
expect "good small LoRA on the fly" 0 "" -p x --lora-apply fly --lora "$L/good.safetensors"

# ---- 5. SDXL ----
CC=${CC:-cc}
MK="$TMP/mkckpt"
if ! "$CC" -O2 -o "$MK" "$SHARED/tools/mkckpt.c" -lcjson -lm 2>"$TMP/mk.err"; then
  bad "cannot build mkckpt: $(cat "$TMP/mk.err")"
else
  X="$G/tiny-sdxl.safetensors"
  for part in all unet te2; do
    only=()
    [ "$part" = all ] || only=(--only "$part")
    python3 "$SRC/scripts/make-lora.py" "$X" "$TMP/xl-$part.json" "${only[@]}" 2>/dev/null &&
      "$MK" "$TMP/xl-$part.json" "$TMP/xl-$part.safetensors" 0 >/dev/null || bad "SDXL LoRA $part not generated"
  done
  XB=(-q --overwrite -m "$X" --vocab "$VOCAB" -W 64 -H 64 --steps 1 --seed 3 -p "a lighthouse")
  for part in none all unet te2; do
    extra=()
    [ "$part" = none ] || extra=(--lora "$TMP/xl-$part.safetensors:0.7")
    "$SDGEN" "${XB[@]}" -o "$TMP/xl-$part.png" --dump-dir "$TMP/xl-$part" "${extra[@]}" >/dev/null 2>"$TMP/xl-$part.err" ||
      bad "SDXL $part: $(cat "$TMP/xl-$part.err")"
  done
  # columns [lo, hi) of the last axis of two .npy float32 arrays: "same" or "differ"
  cols() {
    python3 - "$@" <<'PYEOF'
import struct, sys
def load(p):
    with open(p, "rb") as f:
        d = f.read()
    hl = struct.unpack("<H", d[8:10])[0]
    h = d[10:10 + hl].decode()
    shape = eval(h[h.index("(") : h.index(")") + 1])
    vals = struct.unpack("<%df" % ((len(d) - 10 - hl) // 4), d[10 + hl:])
    return shape, vals
(sa, a), (sb, b) = load(sys.argv[1]), load(sys.argv[2])
lo, hi = int(sys.argv[3]), int(sys.argv[4])
w = sa[-1]
assert sa == sb
print("same" if all(a[i] == b[i] for i in range(len(a)) if lo <= i % w < hi) else "differ")
PYEOF
  }
  N="$TMP/xl-none"
  check_cols() { # NAME WANT FILE LO HI PART
    local got
    got=$(cols "$N/$3.npy" "$TMP/xl-$6/$3.npy" "$4" "$5")
    [ "$got" = "$2" ] && ok "SDXL $6 LoRA: $1 $2" || bad "SDXL $6 LoRA: $1 $got, want $2"
  }
  # tiny-sdxl: text encoder 1 is 64 wide, text encoder 2 128; the context is the two side by side
  check_cols "text encoder 1 (context columns 0-63)" differ text_emb_cond 0 64 all
  check_cols "text encoder 2 (context columns 64-191)" differ text_emb_cond 64 192 all
  check_cols "U-Net output" differ unet0_out 0 100000 all
  check_cols "text encoder 1" same text_emb_cond 0 64 te2
  check_cols "text encoder 2" differ text_emb_cond 64 192 te2
  check_cols "pooled vector" differ pooled_cond 0 100000 te2
  check_cols "text embedding" same text_emb_cond 0 192 unet
  check_cols "U-Net output" differ unet0_out 0 100000 unet
  # SD 2.x (F16 file, OpenCLIP text encoder: q/k/v are row blocks of in_proj_weight, linear proj_in/out):
  # in both weights modes, a LoRA item then a plain item; the plain one equals a run without any LoRA
  # (--weights f32 patches the model's own converted copies in place and reads them back from the file).
  S2="$G/tiny-sd2.safetensors"
  python3 "$SRC/scripts/make-lora.py" "$S2" "$TMP/sd2.json" 2>/dev/null && "$MK" "$TMP/sd2.json" "$TMP/sd2.safetensors" 0 >/dev/null ||
    bad "SD 2.x LoRA not generated"
  printf '{"prompt": "a lighthouse", "seed": 5, "loras": "%s:0.7"}\n{"prompt": "a lighthouse", "seed": 5}\n' \
    "$TMP/sd2.safetensors" >"$TMP/sd2.jsonl"
  for w in f16 f32 fly; do
    S2B=(-q --overwrite -m "$S2" --vocab "$VOCAB" -W 64 -H 64 --steps 2 --weights "${w/fly/f16}")
    if [ "$w" = fly ]; then S2B+=(--lora-apply fly); else S2B+=(--lora-apply merge); fi
    mkdir -p "$TMP/sd2b-$w"
    "$SDGEN" "${S2B[@]}" --prompts "$TMP/sd2.jsonl" -o "$TMP/sd2b-$w/{index}.png" --dump-dir "$TMP/sd2b-$w" \
      >/dev/null 2>"$TMP/sd2b-$w.err" || bad "SD 2.x batch ($w): $(cat "$TMP/sd2b-$w.err")"
    "$SDGEN" "${S2B[@]}" --seed 5 -p "a lighthouse" -o "$TMP/sd2n-$w.png" --dump-dir "$TMP/sd2n-$w" \
      >/dev/null 2>"$TMP/sd2n-$w.err" || bad "SD 2.x plain ($w): $(cat "$TMP/sd2n-$w.err")"
    for f in text_emb_cond unet0_out image_float; do
      differ "SD 2.x LoRA item changes $f ($w)" "$TMP/sd2n-$w/$f.npy" "$TMP/sd2b-$w/1/$f.npy"
      same "SD 2.x item after a LoRA item = run without LoRA: $f ($w)" "$TMP/sd2n-$w/$f.npy" "$TMP/sd2b-$w/2/$f.npy"
    done
  done
  # --weights f16 merges into F16 copies (rounded to nearest even), f32 into float32 ones: without a LoRA the two
  # modes agree exactly, with it they differ by the F16 rounding of the merged weights only (bound 0.02: the
  # LoRA itself moves these tensors by 2-5; measured 0.002-0.006)
  for f in text_emb_cond unet0_out image_float; do
    # on the fly the file's F16 weights are used as they are, plus the float32 low-rank products: the float32
    # merge's values within float32 rounding (the LoRA moves these tensors by 2-5)
    within "SD 2.x LoRA on the fly within 1e-4 of the f32 merge ($f)" "$TMP/sd2b-f32/1/$f.npy" "$TMP/sd2b-fly/1/$f.npy" 1e-4
    same "SD 2.x without LoRA: f16 = f32 ($f)" "$TMP/sd2n-f16/$f.npy" "$TMP/sd2n-f32/$f.npy"
    got=$(maxdiff "$TMP/sd2b-f16/1/$f.npy" "$TMP/sd2b-f32/1/$f.npy")
    echo "     SD 2.x LoRA item, --weights f16 vs f32: max |difference| of $f = $got"
    if awk -v d="$got" 'BEGIN { exit !(d + 0 > 0 && d + 0 <= 0.02) }' && [ "$got" != size ]; then
      ok "SD 2.x LoRA: f16 merge within 0.02 of the f32 merge, not equal ($f: $got)"
    else
      bad "SD 2.x LoRA: f16 vs f32 merge, $f differs by $got (want 0 < d <= 0.02)"
    fi
  done

  # SDXL textual inversion: clip_l / clip_g copies of "cat" give that word's context and pooled vector
  for w in mycat cat; do
    "$SDGEN" "${XB[@]}" -p "a photo of $w" --embeddings-dir "$TMP/xlemb" -o "$TMP/xlti-$w.png" --dump-dir "$TMP/xlti-$w" \
      >/dev/null 2>"$TMP/xlti-$w.err" || bad "SDXL TI $w: $(cat "$TMP/xlti-$w.err")"
  done
  same "SDXL embedding (clip_l + clip_g) = the token it copies (context)" "$TMP/xlti-cat/text_emb_cond.npy" \
    "$TMP/xlti-mycat/text_emb_cond.npy"
  same "SDXL embedding = the token it copies (pooled vector)" "$TMP/xlti-cat/pooled_cond.npy" "$TMP/xlti-mycat/pooled_cond.npy"
  expect "SD 1.x embedding on SDXL" 2 "an SDXL model needs an embedding with \"clip_l\" and \"clip_g\" tensors" \
    -m "$G/tiny-sdxl.safetensors" --embeddings-dir "$TMP/m/embeddings" -p "a photo of mycat"
  expect "SDXL LoRA on SD 1.x" 2 "an SDXL LoRA (it patches a second text encoder" -p x --lora "$TMP/xl-all.safetensors"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
