#!/usr/bin/python3
"""make_seeds.py — write the small seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/.

Run once (/usr/bin/python3 tests/fuzz/make_seeds.py [SHARED_DIR]); the output is committed. Only the standard
library and PIL (for the image seeds) are used. Each seed is small (header-sized); the golden tiny
models contribute their headers in the safetensors target's "Z" (header-only, zero-extended) form.
"""
import io
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared")
CORPUS = os.path.join(HERE, "corpus")
SEP = b"\x01\x02"


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- safetensors
def st_file(header, data=b"", pad=True):
    h = json.dumps(header, separators=(",", ":")).encode() if not isinstance(header, bytes) else header
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    t = "safetensors"
    put(t, "f32_meta", st_file({"__metadata__": {"format": "pt", "modelspec.architecture": "stable-diffusion-v1"},
                                "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(range(16))))
    sizes = {"F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F32": 4}
    hdr, off = {}, 0
    for k, (dt, sz) in enumerate(sizes.items()):
        hdr["t%d_%s" % (k, dt)] = {"dtype": dt, "shape": [3], "data_offsets": [off, off + 3 * sz]}
        off += 3 * sz
    hdr["scalar"] = {"dtype": "F32", "shape": [], "data_offsets": [off, off + 4]}
    hdr["empty"] = {"dtype": "F16", "shape": [0, 4], "data_offsets": [off + 4, off + 4]}
    put(t, "all_dtypes", st_file(hdr, bytes((i * 37) & 255 for i in range(off + 4))))
    # malformed files (the cases of tests/test_safetensors.c)
    put(t, "bad_truncated", b"\x10\x00\x00")
    put(t, "bad_hlen_past_eof", struct.pack("<Q", 1000) + b"{}")
    put(t, "bad_hlen_huge", struct.pack("<Q", 1 << 62) + b"{}")
    put(t, "bad_json", st_file(b'{"w":{"dtype":"F32",'))
    put(t, "bad_not_object", st_file(b'[1,2,3]'))
    put(t, "bad_dtype", st_file({"w": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"))
    put(t, "bad_offsets_outside", st_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4))
    put(t, "bad_overlap", st_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))
    put(t, "bad_span", st_file({"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}, b"\0" * 4))
    put(t, "bad_duplicate", st_file(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                    b'"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0"))
    put(t, "bad_metadata", st_file({"__metadata__": {"a": 1}}))
    put(t, "bad_shape", st_file({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, b"\0"))
    put(t, "bad_empty", b"")
    # header-only ("Z") seeds: the golden tiny models and one tiny-cfg component
    for name, path in [("Z_tiny_sd1", "golden/models/tiny-sd1.safetensors"),
                       ("Z_tiny_sd2", "golden/models/tiny-sd2.safetensors")]:
        with open(os.path.join(SHARED, path), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            put(t, name, b"Z" + struct.pack("<Q", n) + f.read(n))


# ---------------------------------------------------------------- diffusers
def diffusers_seeds():
    t = "diffusers"
    base = os.path.join(SHARED, "golden/models/tiny-cfg")
    parts = []
    for rel in ["unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json",
                "tokenizer/special_tokens_map.json"]:
        with open(os.path.join(base, rel)) as f:
            parts.append(json.dumps(json.load(f), separators=(",", ":")).encode())
    names = b"\n".join([b"down_blocks.0.resnets.1.conv1.weight", b"down_blocks.0.attentions.0.proj_in.weight",
                        b"down_blocks.0.downsamplers.0.conv.bias", b"mid_block.resnets.1.time_emb_proj.weight",
                        b"up_blocks.1.upsamplers.0.conv.weight", b"encoder.mid_block.attentions.0.to_q.weight",
                        b"decoder.up_blocks.0.resnets.2.conv_shortcut.weight", b"text_model.final_layer_norm.bias",
                        b"conv_norm_out.weight", b"time_embedding.linear_2.bias"])
    put(t, "tiny_cfg", SEP.join(parts + [names]))
    put(t, "tiny_cfg_configs_only", SEP.join(parts))
    unet = json.loads(parts[0])
    sd2 = dict(unet, use_linear_projection=True, attention_head_dim=[1, 1], num_attention_heads=None)
    put(t, "sd2_style_unet", SEP.join([json.dumps(sd2).encode()] + parts[1:]))
    put(t, "no_block_out", SEP.join([b'{"layers_per_block":2}'] + parts[1:]))
    put(t, "bad_json", SEP.join([b'{"block_out_channels":[32,'] + parts[1:]))
    sched = json.loads(parts[3])
    put(t, "v_prediction", SEP.join(parts[:3] + [json.dumps(dict(sched, prediction_type="v_prediction",
                                                                 timestep_spacing="trailing")).encode()] + parts[4:]))


# ---------------------------------------------------------------- tokenizer
def tokenizer_seeds():
    t = "tokenizer"
    with open(os.path.join(SHARED, "clip/merges.txt"), encoding="utf-8") as f:
        merges = f.read().split("\n")
    with open(os.path.join(SHARED, "clip/vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    head, body = merges[0], merges[1:]
    small = "\n".join([head] + body[:120]) + "\n"
    put(t, "mem_merges", b"\x00" + small.encode())
    put(t, "mem_merges_noheader", b"\x00" + "\n".join(body[:60]).encode())
    put(t, "file_merges", b"\x01" + small.encode())
    keep = 512 + 120
    sv = {k: v for k, v in vocab.items() if v < keep}
    sv["<|startoftext|>"] = keep
    sv["<|endoftext|>"] = keep + 1
    put(t, "hf_pair", b"\x02" + json.dumps(sv, ensure_ascii=False).encode() + SEP + small.encode())
    put(t, "gz_merges", b"\x03" + gzip_bytes(small.encode()))
    put(t, "bad_merge_line", b"\x00#v\na b c\nq\n")


def gzip_bytes(b):
    import gzip
    return gzip.compress(b, 9, mtime=0)


# ---------------------------------------------------------------- prompt
def prompt_seeds():
    t = "prompt"
    prompts = ["a photo of a cat", "(masterpiece:1.2), ((best quality)), [blurry], (red:0.5) apple",
               "a \\(literal\\) bracket \\\\ and \\[x\\]", "unbalanced ((x) and ] and [y", "one BREAK two BREAKthree",
               "(a:1.2.3)", "x " * 100 + "," + "y, " * 40, "東京 café Straße 😀 don't it's", "(((((((((deep)))))))))",
               "[a:b:0.5] (x:-1) (y:1e3) (z:)", ""]
    for i, p in enumerate(prompts):
        put(t, "p%02d" % i, bytes([i & 3]) + p.encode())


# ---------------------------------------------------------------- batch
def batch_seeds():
    t = "batch"
    put(t, "plain", "# prompts\na red apple\n\n  a blue car on a road  \n#comment\nlast line without newline")
    lines = [{"prompt": "a cat", "seed": 42, "steps": 4, "cfg_scale": 7.5, "width": 64, "height": 64},
             {"prompt": "a dog", "negative_prompt": "blurry", "sampler": "euler_a", "schedule": "karras",
              "rng": "cpu", "output": "out/{index}-{seed}-{prompt}.png", "seed": 18446744073709551615},
             {"prompt": "img2img", "init_image": "init.png", "strength": 0.6, "eta": 0.0, "clip_skip": 2,
              "prediction": "v", "timestep_spacing": "trailing", "batch_count": 2, "model": "m.safetensors"},
             {"name": "p1", "prompt": "ignored keys", "stats": {"a": [1, 2]}, "family": "sd1", "seed": None}]
    put(t, "jsonl", "\n".join(json.dumps(l) for l in lines) + "\n")
    put(t, "jsonl_errors", '{"prompt":"ok"}\n{"prompt":1}\n{"prompt":"x","bogus":2}\n[1]\n{bad json\n'
                          '{"prompt":"a","prompt":"b"}\n{"prompt":""}\n{"prompt":"s","seed":-1}\n{"prompt":"\xff"}\n')
    put(t, "crlf", '{"prompt":"a"}\r\n\r\n{"prompt":"b","steps":2}\r\n')
    put(t, "sanitize", "  ../../etc/passwd\n..\n.hidden\n-rf\n/abs/path\\x:y|z?*#<>\"'\n\t\x01\x7f ok\n")


# ---------------------------------------------------------------- image
def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def image_seeds():
    t = "image"
    from PIL import Image, PngImagePlugin
    im = Image.new("RGB", (16, 12))
    for y in range(12):
        for x in range(16):
            im.putpixel((x, y), (x * 16, y * 20, (x * y) & 255))

    def save(name, img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        put(t, name, b.getvalue())

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 42")
    save("rgb.png", im, "PNG", pnginfo=info)
    info2 = PngImagePlugin.PngInfo()
    info2.add_itxt("parameters", "東京 😀\nSteps: 4", zip=True)
    save("itxt.png", im, "PNG", pnginfo=info2)
    save("rgba.png", im.convert("RGBA"), "PNG")
    save("grey.png", im.convert("L"), "PNG")
    save("palette.png", im.convert("P"), "PNG")
    save("la.png", im.convert("LA"), "PNG")
    save("i16.png", im.convert("L").point(lambda v: v * 200).convert("I"), "PNG")
    save("base.jpg", im, "JPEG", quality=80)
    save("progressive.jpg", im, "JPEG", quality=60, progressive=True)
    save("grey.jpg", im.convert("L"), "JPEG")
    save("sub444.jpg", im, "JPEG", subsampling=0)
    save("odd_9x7.png", im.resize((9, 7)), "PNG")
    # a hand-made PNG with a zTXt chunk
    raw = b"\x00\x10\x20\x30" + b"\x00\x40\x50\x60"  # 1×2 RGB, filter 0 per row
    ihdr = struct.pack(">IIBBBBB", 1, 2, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
           png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"hello")) +
           png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    put(t, "ztxt.png", png)


def manifest_seeds():
    t = "manifest"
    sha = "0123456789abcdef" * 4
    base = {"item": 0, "image": 0, "images": 1, "items": 3, "index": 1, "line": 1, "shard": "0/2", "status": "ok",
            "prompt": "a red apple", "negative_prompt": "", "seed": 18446744073709551615, "steps": 20,
            "cfg_scale": 7.5, "sampler": "euler_a", "schedule": "default", "timestep_spacing": "default",
            "prediction": "eps", "rng": "cpu", "width": 64, "height": 64, "clip_skip": 1,
            "model": "models/demo.safetensors", "output": "out/1.png", "sha256": sha, "seconds": 0.25,
            "parameters": "a red apple\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64",
            "batch": "b.jsonl", "batch_sha256": sha, "time": 1700000000.5}
    failed = {"item": 1, "image": 0, "images": 0, "items": 3, "index": 0, "line": 3, "shard": "1/2",
              "status": "failed", "message": "b.jsonl:3: \"prompt\" must be a string", "batch_sha256": sha,
              "time": 1700000001}
    skipped = dict(base, item=2, index=2, line=4, status="skipped-existing", output="out/2.png", shard="0/2")
    line = lambda d: json.dumps(d, ensure_ascii=False)
    put(t, "one_ok", line(base) + "\n")
    put(t, "three", "\n".join(line(d) for d in (base, failed, skipped)) + "\n")
    put(t, "torn", line(base) + "\n" + line(failed)[:40] + "\n" + line(skipped) + "\n")
    put(t, "two_files", (line(base) + "\n" + line(failed) + "\n").encode() + SEP +
        (line(dict(failed, status="ok", output="out/x.png", sha256=sha, parameters="x", prompt="x", seed=3,
                   time=1700000009)) + "\n").encode())
    put(t, "duplicate", line(base) + "\n" + line(dict(base, time=1700000002)) + "\n")
    put(t, "unicode", line(dict(base, prompt="caf\u00e9 \u2603 \U0001F600", output="out/\u00e9.png")) + "\n")
    put(t, "bad_batch", line(base) + "\n" + line(dict(skipped, batch_sha256="f" * 64)) + "\n")


# ---------------------------------------------------------------- serve (first byte: 0 txt2img, 1 img2img,
# 2 OpenAI, 3 png-info, 4 options, 5 base64)
def serve_seeds():
    t = "serve"
    import base64
    webuiapi = {"enable_hr": False, "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0,
                "hr_scale": 2, "hr_upscaler": "Latent", "prompt": "a red circle", "styles": [], "seed": 42,
                "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0,
                "sampler_name": "DPM++ 2M Karras", "scheduler": "Automatic", "batch_size": 2, "n_iter": 1,
                "steps": 4, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False, "tiling": False,
                "negative_prompt": "blurry", "eta": 1.0, "override_settings": {"CLIP_stop_at_last_layers": 2,
                "sd_model_checkpoint": "demo", "randn_source": "GPU"}, "override_settings_restore_afterwards": True,
                "script_args": [], "script_name": None, "send_images": True, "save_images": False,
                "alwayson_scripts": {}}
    put(t, "txt2img", b"\x00" + json.dumps(webuiapi).encode())
    put(t, "txt2img_bad", b"\x00" + b'{"prompt":"x","steps":0,"width":65,"seed":-2,"sampler_name":"LMS","cfg_scale":"7.5"}')
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 2, 8, 2, 0, 0, 0)) +
           png_chunk(b"tEXt", b"parameters\x00a cat\nSteps: 4, Sampler: DDIM, Size: 64x64, Seed: 42") +
           png_chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x30\x00\x40\x50\x60")) + png_chunk(b"IEND", b""))
    b64 = base64.b64encode(png).decode()
    put(t, "img2img", b"\x01" + json.dumps({"prompt": "p", "init_images": ["data:image/png;base64," + b64],
                                            "denoising_strength": 0.5, "steps": 4, "include_init_images": True,
                                            "resize_mode": 0}).encode())
    put(t, "openai", b"\x02" + json.dumps({"prompt": "a cat", "n": 2, "size": "64x64", "response_format": "b64_json",
                                           "model": "dall-e-2", "seed": "18446744073709551615", "sampler": "euler_a",
                                           "negative_prompt": "", "cfg_scale": 5}).encode())
    put(t, "pnginfo", b"\x03" + json.dumps({"image": b64}).encode())
    put(t, "options", b"\x04" + json.dumps({"sd_model_checkpoint": "demo.safetensors [8c42de4eff]",
                                            "CLIP_stop_at_last_layers": 2, "randn_source": "CPU", "x": [1]}).encode())
    put(t, "base64", b"\x05" + b64[:40].encode() + b"\n" + b64[40:].encode())
    put(t, "deep", b"\x00" + b"[" * 40 + b"]" * 40)


if __name__ == "__main__":
    safetensors_seeds()
    diffusers_seeds()
    tokenizer_seeds()
    prompt_seeds()
    batch_seeds()
    image_seeds()
    manifest_seeds()
    serve_seeds()
    for d in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, d))
        size = sum(os.path.getsize(os.path.join(CORPUS, d, f)) for f in files)
        print("%-12s %3d seeds, %7d bytes" % (d, len(files), size))
