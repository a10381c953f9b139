"""Contact sheet of demo-model outputs for a grid of prompts (docs/demo-contact-sheet.png).

  /usr/bin/python3 scripts/demo-model/contact_sheet.py [--sdgen build/sdgen] [--out docs/demo-contact-sheet.png]

Rows: shapes, positions, colours, sizes, two shapes, gradients / short prompts. Seed 7 for every image,
20 DDIM steps, CFG 7.5, 64x64, shown at 2x (nearest). The prompt of each cell is printed (and listed in
docs/DEMO.md).
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

ROOT = evaluate.ROOT

ROWS = [
    ["a large red circle in the centre, white background", "a large blue square in the centre, yellow background",
     "a large green triangle in the centre, pink background", "a large yellow star in the centre, blue background",
     "a large pink heart in the centre, black background", "a large orange circle in the centre, cyan background",
     "a large purple square in the centre, green background", "a large white star in the centre, red background"],
    ["a large red circle on the left, blue background", "a large red circle on the right, blue background",
     "a large red circle at the top, blue background", "a large red circle at the bottom, blue background",
     "a small yellow heart on the left, purple background", "a small yellow heart on the right, purple background",
     "a small yellow heart at the top, purple background", "a small yellow heart at the bottom, purple background"],
    ["a large red star at the top, black background", "a large orange star at the top, black background",
     "a large yellow star at the top, black background", "a large green star at the top, black background",
     "a large cyan star at the top, black background", "a large blue star at the top, black background",
     "a large purple star at the top, black background", "a large pink star at the top, black background"],
    ["a small green square on the left, white background", "a large green square on the left, white background",
     "a small black circle in the middle, orange background", "a large black circle in the middle, orange background",
     "a small blue triangle at the bottom, yellow background", "a large blue triangle at the bottom, yellow background",
     "a small white heart on the right, cyan background", "a large white heart on the right, cyan background"],
    ["a large red circle on the left and a large blue square on the right, white background",
     "a large yellow star at the top and a small green heart at the bottom, black background",
     "a small white circle on the left and a small black circle on the right, pink background",
     "a large blue triangle in the centre and a small red star at the top, yellow background",
     "a large orange heart on the right and a large purple circle on the left, cyan background",
     "a small pink square at the bottom and a large cyan triangle at the top, blue background",
     "a large green circle at the top and a large red circle at the bottom, white background",
     "a large black star on the left and a small white square on the right, green background"],
    ["a large red circle in the centre, blue to yellow gradient background",
     "a large white star on the left, purple to pink gradient background",
     "a small black heart at the top, orange to yellow gradient background",
     "a large yellow square at the bottom, black to blue gradient background",
     "a red circle", "a blue star on the right", "a large green heart", "a yellow triangle, black background"],
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/demo.safetensors"))
    ap.add_argument("--sdgen")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/demo-contact-sheet.png"))
    a = ap.parse_args()
    images = []
    if not a.sdgen:
        import torch
        import export
        import sample
        torch.set_num_threads(1)
        nets, tok, _ = export.load_model(a.model)
    for r, row in enumerate(ROWS):
        for c, prompt in enumerate(row):
            if a.sdgen:
                im = evaluate.sdgen_image(a.sdgen, a.model, prompt, a.seed, f"/tmp/sdgen-demo-sheet-{r}{c}.png")
            else:
                im = sample.generate(nets, tok, prompt, a.seed)
            images.append(np.kron(im, np.ones((2, 2, 1), np.uint8)))
            print(f"row {r + 1} col {c + 1}: {prompt}")
    Image.fromarray(evaluate.sheet(images, cols=8, pad=4)).save(a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
