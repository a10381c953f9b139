"""A deliberately simple image analyser for demo-model outputs (64x64 RGB, one shape on a solid background).

  background colour = nearest palette colour to the median of the outer 3-pixel ring
  shape pixels      = pixels farther than 80 (RGB distance) from that median background
  shape colour      = the most common nearest-palette colour among shape pixels (excluding the background name)
  position          = the nearest of the five anchor points (left/right/top/bottom/centre) to the centroid of
                      the pixels that have the shape colour
"""
import numpy as np

import data

_NAMES = data.COLOUR_NAMES
_PAL = np.array([data.COLOURS[n] for n in _NAMES], np.float32)


def nearest(rgb):
    rgb = np.asarray(rgb, np.float32).reshape(-1, 3)
    d = ((rgb[:, None, :] - _PAL[None]) ** 2).sum(-1)
    return d.argmin(-1)


def analyse(img):
    img = np.asarray(img, np.float32)
    h, w, _ = img.shape
    ring = np.ones((h, w), bool)
    ring[3:-3, 3:-3] = False
    bg_med = np.median(img[ring], axis=0)
    bg = int(nearest(bg_med)[0])
    dist = np.sqrt(((img - bg_med) ** 2).sum(-1))
    mask = dist > 80
    res = {"background": _NAMES[bg], "colour": None, "position": None, "shape_pixels": int(mask.sum())}
    if mask.sum() < 12:
        return res
    lab = nearest(img[mask])
    lab = lab[lab != bg]
    if lab.size < 12:
        return res
    col = int(np.bincount(lab, minlength=len(_NAMES)).argmax())
    res["colour"] = _NAMES[col]
    full = nearest(img.reshape(-1, 3)).reshape(h, w)
    sel = mask & (full == col)
    ys, xs = np.nonzero(sel)
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    best, bd = None, 1e9
    for name, ((fx, fy), _) in data.POSITIONS.items():
        d = (fx - cx) ** 2 + (fy - cy) ** 2
        if d < bd:
            best, bd = name, d
    res["position"] = best
    res["centroid"] = (round(float(cx), 3), round(float(cy), 3))
    return res


def score(res, combo):
    """combo = (size, colour, shape, position, background) -> dict of attribute -> bool"""
    _, colour, _, pos, bg = combo
    return {"colour": res["colour"] == colour, "background": res["background"] == bg, "position": res["position"] == pos}


if __name__ == "__main__":
    # sanity check: the analyser on the ground-truth renderings of the held-out combinations
    ok = tot = 0
    for i, combo in enumerate(data.holdout_combos()):
        size, colour, shape, pos, bg = combo
        img = data.render({"bg": (bg,), "shapes": [(size, colour, shape, pos, (0.0, 0.0))]})
        s = score(analyse(img), combo)
        ok += sum(s.values())
        tot += len(s)
        if not all(s.values()):
            print("miss", combo, analyse(img))
    print(f"ground truth: {ok}/{tot}")
