"""Reference images of the shipped demo model for tests/test_demo.c, drawn by the PyTorch sampler (sample.py).

The test runs the sdgen binary on the same prompts and seeds (no --model: the default-model path) and asks that
its PNGs agree with these within +-2 for >= 99% of the values (an independent end-to-end check, docs/DEMO.md). Rerun
this after every new export of models/demo.safetensors:

  /usr/bin/python3 scripts/demo-model/make_fixtures.py
"""
import hashlib
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import sample  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
MODEL = os.path.join(ROOT, "models/demo.safetensors")
OUT = os.path.join(ROOT, "tests/fixtures/demo")
CASES = [  # seed, prompt (the README's first command, a held-out combination, a two-shape prompt)
    (1, "a large red circle on the left, blue background"),
    (1000, "a large red star on the left, white background"),
    (7, "a small yellow heart at the top and a large cyan square at the bottom, purple background"),
]


def main():
    torch.set_num_threads(1)
    nets, tok, _ = export.load_model(MODEL)
    os.makedirs(OUT, exist_ok=True)
    sha = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    lines = [f"# made by scripts/demo-model/make_fixtures.py from models/demo.safetensors sha256 {sha}",
             "# seed<TAB>file<TAB>prompt; 20 DDIM steps, CFG 7.5, 64x64, PyTorch sampler (sample.py)"]
    for i, (seed, prompt) in enumerate(CASES):
        px = sample.generate(nets, tok, prompt, seed, steps=20, cfg=7.5)
        name = f"torch-{i}.png"
        Image.fromarray(px).save(os.path.join(OUT, name))
        lines.append(f"{seed}\t{name}\t{prompt}")
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
