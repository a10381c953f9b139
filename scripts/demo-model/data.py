"""Procedural captioned scenes for the sdgen demo model.

Every scene is a function of one integer seed: one or two shapes (circle, square, triangle, star, heart)
in named colours, small or large, at a named position, on a solid or two-colour gradient background,
with a template caption such as "a large red circle on the left, blue background".

48 single-shape caption combinations (size, colour, shape, position, background) are held out: the
training sampler never draws them as a whole scene; evaluate.py renders exactly those captions.
"""
import math
import random

import numpy as np
from PIL import Image, ImageDraw

RES = 64          # image side in pixels (latent 8x8 with the f=8 VAE)
SS = 4            # supersampling factor for anti-aliased edges

# name -> sRGB; chosen so that every pair stays far apart after a blurry decode (analyse.py maps each
# pixel to the nearest of these).
COLOURS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (30, 70, 220),
    "purple": (130, 50, 180),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_NAMES = list(COLOURS)
SHAPES = ["circle", "square", "triangle", "star", "heart"]
SIZES = {"small": 8.0, "large": 14.0}          # "radius" in pixels at RES=64
# position name -> (centre x, centre y) as a fraction of the side, and its caption phrases
POSITIONS = {
    "left": ((0.25, 0.5), ["on the left"]),
    "right": ((0.75, 0.5), ["on the right"]),
    "top": ((0.5, 0.25), ["at the top"]),
    "bottom": ((0.5, 0.75), ["at the bottom"]),
    "centre": ((0.5, 0.5), ["in the centre", "in the center", "in the middle"]),
}
POSITION_NAMES = list(POSITIONS)

HOLDOUT_SEED = 20261126
N_HOLDOUT = 48


def holdout_combos():
    """48 (size, colour, shape, position, background) tuples, balanced over colours and positions."""
    rng = random.Random(HOLDOUT_SEED)
    out = []
    for i in range(N_HOLDOUT):
        colour = COLOUR_NAMES[i % len(COLOUR_NAMES)]
        pos = POSITION_NAMES[(i + i // 10) % len(POSITION_NAMES)]
        size = "large" if i % 3 != 2 else "small"
        shape = SHAPES[rng.randrange(len(SHAPES))]
        bg = rng.choice([c for c in COLOUR_NAMES if c != colour])
        out.append((size, colour, shape, pos, bg))
    assert len(set(out)) == N_HOLDOUT
    return out


HOLDOUT = set(holdout_combos())


def caption_single(size, colour, shape, pos, bg, phrase_idx=0):
    return f"a {size} {colour} {shape} {POSITIONS[pos][1][phrase_idx]}, {bg} background"


def _star_points(cx, cy, r, rot):
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = rot + k * math.pi / 5 - math.pi / 2
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _heart_points(cx, cy, r):
    pts = []
    for k in range(48):
        t = 2 * math.pi * k / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((cx + x * r / 16.5, cy - (y + 2.5) * r / 16.5))
    return pts


def draw_shape(draw, shape, cx, cy, r, rgb):
    s = SS
    cx, cy, r = cx * s, cy * s, r * s
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif shape == "square":
        h = r * 0.85
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=rgb)
    elif shape == "triangle":
        pts = [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)]
        draw.polygon(pts, fill=rgb)
    elif shape == "star":
        draw.polygon(_star_points(cx, cy, r * 1.1, 0.0), fill=rgb)
    elif shape == "heart":
        draw.polygon(_heart_points(cx, cy, r), fill=rgb)
    else:
        raise ValueError(shape)


def render(spec):
    """spec: dict(bg=(name,) or (top,bottom), shapes=[(size, colour, shape, pos, (jx,jy))]) -> uint8 HxWx3."""
    n = RES * SS
    bg = spec["bg"]
    if len(bg) == 1:
        img = Image.new("RGB", (n, n), COLOURS[bg[0]])
    else:
        a = np.array(COLOURS[bg[0]], np.float32)
        b = np.array(COLOURS[bg[1]], np.float32)
        w = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None, None]
        arr = (a * (1 - w) + b * w) * np.ones((1, n, 1), np.float32)
        img = Image.fromarray(np.round(arr).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for size, colour, shape, pos, (jx, jy) in spec["shapes"]:
        fx, fy = POSITIONS[pos][0]
        draw_shape(d, shape, fx * RES + jx, fy * RES + jy, SIZES[size] + (jx * 0.2), COLOURS[colour])
    img = img.resize((RES, RES), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def sample_scene(seed, allow_holdout=False):
    """Draw one scene and its caption from integer seed. Returns (image uint8 HxWx3, caption, spec)."""
    rng = random.Random(seed * 7919 + 17)
    while True:
        nshape = 1 if rng.random() < 0.65 else 2
        gradient = rng.random() < 0.15
        used = set()
        shapes = []
        positions = rng.sample(POSITION_NAMES, nshape)
        for k in range(nshape):
            colour = rng.choice([c for c in COLOUR_NAMES if c not in used])
            used.add(colour)
            shapes.append((rng.choice(list(SIZES)), colour, rng.choice(SHAPES), positions[k],
                           (rng.uniform(-2.5, 2.5), rng.uniform(-2.5, 2.5))))
        free = [c for c in COLOUR_NAMES if c not in used]
        bg = tuple(rng.sample(free, 2)) if gradient else (rng.choice(free),)
        if nshape == 1 and not gradient and not allow_holdout:
            s = shapes[0]
            if (s[0], s[1], s[2], s[3], bg[0]) in HOLDOUT:
                continue
        break
    # caption; some parts are occasionally left out so that short prompts also work
    phrases = []
    for size, colour, shape, pos, _ in shapes:
        words = ["a"]
        if rng.random() > 0.1:
            words.append(size)
        words += [colour, shape]
        if nshape == 2 or rng.random() > 0.05:
            words.append(rng.choice(POSITIONS[pos][1]))
        phrases.append(" ".join(words))
    cap = " and ".join(phrases)
    if rng.random() > 0.05:
        if len(bg) == 1:
            cap += f", {bg[0]} background"
        else:
            cap += f", {bg[0]} to {bg[1]} gradient background"
    spec = {"bg": bg, "shapes": shapes}
    return render(spec), cap, spec


def all_words():
    """Every word the caption grammar can produce (for the BPE learner)."""
    words = ["a", "and", "background", "gradient", "to", "on", "the", "at", "in", ","]
    words += COLOUR_NAMES + SHAPES + list(SIZES)
    for _, phr in POSITIONS.values():
        for p in phr:
            words += p.split()
    return sorted(set(words))


if __name__ == "__main__":
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/demo-scenes.png"
    tiles = []
    for s in range(32):
        img, cap, _ = sample_scene(s)
        print(s, cap)
        tiles.append(img)
    grid = np.concatenate([np.concatenate(tiles[r * 8:(r + 1) * 8], 1) for r in range(4)], 0)
    Image.fromarray(grid).save(out)
    print("holdout example:", caption_single(*holdout_combos()[0]))
