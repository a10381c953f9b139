#!/usr/bin/python3
"""Expected results for tests/test_params.c (run from the repository root):

    /usr/bin/python3 scripts/make-params-fixtures.py

Writes tests/fixtures/params/infotext.json:
  "parse":  infotexts and what AUTOMATIC1111's parse_generation_parameters (modules/infotext_utils.py)
            makes of them: prompt, negative prompt and the ordered "Key: value" pairs. Re-implemented
            here from its documented behaviour: the same re_param / re_imagesize expressions, quote()
            = json.dumps(ensure_ascii=False) when the value has ',', ':' or a newline, unquote() =
            json.loads, an empty value skipped, Size split into Size-1/Size-2, defaults for Clip skip,
            RNG and Schedule type.
  "format": generation settings and the infotext create_infotext (modules/processing.py) writes for
            them (pair order Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model hash, Model,
            Denoising strength, Clip skip, RNG, Version; Python's repr for floats).
"""
import json
import os
import re

re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
re_imagesize = re.compile(r"^(\d+)x(\d+)$")


def quote(text):
    s = str(text)
    if "," not in s and "\n" not in s and ":" not in s:
        return s
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse(x):
    res = {}
    prompt, negative, done = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    for k, v in re_param.findall(lastline):
        try:
            if v[0] == '"' and v[-1] == '"':
                v = unquote(v)
            m = re_imagesize.match(v)
            if m is not None:
                res[f"{k}-1"] = m.group(1)
                res[f"{k}-2"] = m.group(2)
            else:
                res[k] = v
        except Exception:
            pass
    res.setdefault("Clip skip", "1")
    res.setdefault("RNG", "GPU")
    res.setdefault("Schedule type", "Automatic")
    return {"text": x, "prompt": prompt, "negative": negative, "kv": [[k, str(v)] for k, v in res.items()]}


def num(v):
    # the web UI's sliders hand integral values over as int: "CFG scale: 7", not "7.0"
    return int(v) if float(v).is_integer() else v


def create(f):
    params = {
        "Steps": f["steps"],
        "Sampler": f.get("sampler"),
        "Schedule type": f.get("schedule_type"),
        "CFG scale": num(f["cfg_scale"]),
        "Seed": f["seed"],
        "Size": f"{f['width']}x{f['height']}",
        "Model hash": f.get("model_hash"),
        "Model": f.get("model_name"),
        "Denoising strength": num(f["strength"]) if f.get("strength", -1) >= 0 else None,
        "Clip skip": None if f.get("clip_skip", 1) <= 1 else f["clip_skip"],
        "RNG": f.get("rng") if f.get("rng") not in (None, "GPU") else None,
        "Version": f.get("version"),
    }
    text = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    neg = f"\nNegative prompt: {f['negative']}" if f.get("negative") else ""
    return f"{f['prompt']}{neg}\n{text}".strip()


PARSE = [
    "a red apple on a table\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, "
    "Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, RNG: CPU, Version: sdgen 0.1.0",
    "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, by Alphonse Mucha "
    "and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\nNegative prompt: ugly, fat, obese, chubby, "
    "(((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), "
    "(poorly drawn hands), messy drawing\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, "
    "Model hash: 45dee52b",
    'p\nSteps: 5, Model: "a, \\"b\\": c", Seed: 3, Size: 64x64',
    "just a prompt, with: colons, Steps: 20",
    "line one\n  line two  \nNegative prompt: neg one\nneg two\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 0, Size: 8x8",
    "p\nSteps: 20, Sampler: , CFG scale: 7, Seed: 1, Size: 64x64",
    "p\nSteps: 20, Gr\u00f6\u00dfe: 5, CFG scale: 7, Seed: 1",
    'p\nModel: "abc" x, Seed: 1, Steps: 2, Size: 5x6',
    "  p1\r\nNegative prompt: n1\r\nSteps: 3, Sampler: DDIM, CFG scale: 4.5, Seed: 18446744073709551615, Size: 768x512  \r\n",
    "Negative prompt: only negative\nSteps: 3, Sampler: DDIM, CFG scale: 4.5, Seed: 9, Size: 64x64",
    "p\nSteps: 20, Size: 512x512a, Seed: 1, Sampler: Euler",
    "p\nSteps: 20, Steps: 30, Seed: 1, Seed: 2",
    "p\nSteps: 20, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Hires resize-1: 1024, Token merging ratio hr: 0.5",
    'p\nSteps: 20, Lora hashes: "a: 1234, b: 5678", Seed: 1, Version: v1.10.1',
    'p\nSteps: 20, Model: "a\\qb", Seed: 1, Size: 1x1',
    'p\nSteps: 20, TI hashes: "\\u732b: 12", Seed: 1, Denoising strength: 0.75, Clip skip: 2, RNG: NV',
    "",
    "\u732b \u304c\nNegative prompt: \u72ac\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: \u30e2\u30c7\u30eb",
    "p\n key with spaces : v1, -bad: x, _under: y, a/b-c d: z",
    'p\nSteps: 20, Empty quoted: "", Seed: 1, Size: 2x2',
]

FORMAT = [
    dict(prompt="a red apple on a table", negative="blurry", steps=20, sampler="DPM++ 2M", schedule_type="Karras",
         cfg_scale=7.5, seed=42, width=512, height=512, model_hash="6ce0161689", model_name="v1-5-pruned-emaonly",
         rng="CPU", version="sdgen 0.1.0"),
    dict(prompt="a cat", negative="", steps=4, sampler="DDIM", schedule_type="Automatic", cfg_scale=7.0, seed=0,
         width=64, height=64, rng="GPU", version="sdgen 0.1.0"),
    dict(prompt="  leading spaces", negative="multi\nline", steps=10, sampler="Euler a", cfg_scale=1.25,
         seed=18446744073709551615, width=768, height=512, model_hash="20fd32b157", model_name="tiny, sd1: test",
         strength=0.6, clip_skip=2, rng="CPU", version="sdgen 0.1.0"),
    dict(prompt="\u732b", negative="\u72ac \"quoted\"", steps=1, sampler="Euler", cfg_scale=0.1, seed=7, width=8,
         height=8, model_name='we"ird\\name,\ttab', strength=0.0001, rng="CPU"),
    dict(prompt="p", steps=30, sampler="DPM++ 2M", cfg_scale=12.345678901234567, seed=1, width=512, height=768,
         strength=1e-05, version="sdgen 0.1.0"),
]


def main():
    out = {"parse": [parse(t) for t in PARSE], "format": []}
    for f in FORMAT:
        fields = dict(f, seed=str(f["seed"]))  # as a string: a 64-bit seed does not survive a JSON double
        out["format"].append({"fields": fields, "expected": create(f)})
    os.makedirs("tests/fixtures/params", exist_ok=True)
    with open("tests/fixtures/params/infotext.json", "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print("wrote", len(out["parse"]), "parse and", len(out["format"]), "format cases")


main()
