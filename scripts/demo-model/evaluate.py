"""Evaluate the demo model on the 48 held-out caption combinations (never drawn during training).

Each caption "a SIZE COLOUR SHAPE POSITION, BG background" is rendered at 64x64, 20 DDIM steps, CFG 7.5,
seed 1000+i, either through the sdgen binary or with the PyTorch reference sampler (sample.py), and scored
by analyse.py on three attributes (shape colour, background colour, rough position): 144 attributes in all.

  # with sdgen (the "done when" check) -- also compares against the PyTorch sampler pixel by pixel:
  /usr/bin/python3 scripts/demo-model/evaluate.py --sdgen build/sdgen --compare
  # PyTorch sampler only:
  /usr/bin/python3 scripts/demo-model/evaluate.py --torch

Writes OUT/score.json, OUT/eval-sheet.png (one row per 8 prompts) and prints a summary.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyse  # noqa: E402
import data     # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))


def sdgen_image(binary, model, prompt, seed, path, steps=20):
    cmd = [binary, "-m", model, "-p", prompt, "--seed", str(seed), "--steps", str(steps), "--sampler", "ddim",
           "--cfg-scale", "7.5", "-W", "64", "-H", "64", "-o", path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"sdgen failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return np.asarray(Image.open(path).convert("RGB"))


def sheet(images, cols=8, pad=2):
    rows = (len(images) + cols - 1) // cols
    h, w, _ = images[0].shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/demo.safetensors"))
    ap.add_argument("--sdgen", help="path to the sdgen binary")
    ap.add_argument("--torch", action="store_true", help="score the PyTorch sampler's images")
    ap.add_argument("--compare", action="store_true", help="with --sdgen: pixel agreement with the PyTorch sampler")
    ap.add_argument("--out", default="/tmp/sdgen-demo-eval")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    if not a.sdgen and not a.torch:
        ap.error("give --sdgen PATH and/or --torch")
    os.makedirs(a.out, exist_ok=True)
    combos = data.holdout_combos()
    prompts = [data.caption_single(*c) for c in combos]
    seeds = [1000 + i for i in range(len(combos))]

    nets = tok = None
    if a.torch or a.compare:
        import torch
        import export
        import sample
        torch.set_num_threads(1)
        nets, tok, _ = export.load_model(a.model)

    results = {}
    sources = []
    if a.sdgen:
        sources.append("sdgen")
    if a.torch or a.compare:
        sources.append("torch")
    images = {s: [] for s in sources}
    times = {s: 0.0 for s in sources}
    for i, (combo, prompt, seed) in enumerate(zip(combos, prompts, seeds)):
        for s in sources:
            t0 = time.time()
            if s == "sdgen":
                im = sdgen_image(a.sdgen, a.model, prompt, seed, os.path.join(a.out, f"sdgen_{i:02d}.png"), a.steps)
            else:
                im = sample.generate(nets, tok, prompt, seed, steps=a.steps)
                Image.fromarray(im).save(os.path.join(a.out, f"torch_{i:02d}.png"))
            times[s] += time.time() - t0
            images[s].append(im)

    summary = {"prompts": len(prompts), "steps": a.steps, "cfg": 7.5, "sampler": "ddim", "size": 64}
    for s in sources:
        per = []
        tot = {"colour": 0, "background": 0, "position": 0}
        for combo, prompt, seed, im in zip(combos, prompts, seeds, images[s]):
            res = analyse.analyse(im)
            sc = analyse.score(res, combo)
            for k, v in sc.items():
                tot[k] += int(v)
            per.append({"prompt": prompt, "seed": seed, "found": {k: res[k] for k in ("colour", "background",
                                                                                      "position")},
                        "ok": sc})
        n = len(combos)
        allok = sum(tot.values())
        results[s] = {"attributes_ok": allok, "attributes": 3 * n, "score": allok / (3 * n),
                      "per_attribute": {k: v / n for k, v in tot.items()}, "seconds": round(times[s], 1),
                      "images": per}
        Image.fromarray(sheet(images[s])).save(os.path.join(a.out, f"eval-sheet-{s}.png"))
        print(f"{s}: {allok}/{3 * n} attributes = {100 * allok / (3 * n):.1f}%  "
              + "  ".join(f"{k} {100 * v / n:.0f}%" for k, v in tot.items()) + f"  ({times[s]:.0f}s)")
    if a.sdgen and "torch" in images:
        diffs = np.concatenate([np.abs(x.astype(int) - y.astype(int)).ravel()
                                for x, y in zip(images["sdgen"], images["torch"])])
        frac = float((diffs <= 2).mean())
        summary["agreement_within_2"] = frac
        summary["max_abs_diff"] = int(diffs.max())
        print(f"sdgen vs PyTorch sampler: {100 * frac:.3f}% of pixel values within +-2 (max diff {diffs.max()})")
    summary["results"] = results
    with open(os.path.join(a.out, "score.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("wrote", os.path.join(a.out, "score.json"))


if __name__ == "__main__":
    main()
