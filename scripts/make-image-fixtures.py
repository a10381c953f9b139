#!/usr/bin/python3
"""Generate the small image fixtures of tests/test_image.c with PIL (run from the repository root):

    /usr/bin/python3 scripts/make-image-fixtures.py

src.png       45x37 RGB: gradients + seeded noise + hard edges (exercises Lanczos overshoot/clipping)
lanczos_WxH.png  PIL Image.resize((W, H), Image.LANCZOS) of src.png: what diffusers' VaeImageProcessor
              (resample="lanczos") and A1111 do to an init image whose size changes
rgba.png, gray.png, pal.png: other PNG colour types; *_rgb.png is PIL's convert("RGB")
text_*.png    2x2 PNGs with a `parameters` chunk as PIL writes it (A1111 saves through PngInfo.add_text):
              tEXt (Latin-1 "café"), iTXt ("猫"), compressed (zip=True: zTXt / compressed iTXt)
photo.jpg     a baseline JPEG (quality 90, 4:2:0); photo_pil.png is PIL's decode of it
orient_K.jpg  the same with EXIF orientation K = 1..8; orient_K_pil.png = ImageOps.exif_transpose of it
Writes tests/fixtures/images/. Deterministic (numpy seed 1234); the files are committed.
"""
import os
import numpy as np
from PIL import Image

OUT = "tests/fixtures/images"
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)

W, H = 45, 37
y, x = np.mgrid[0:H, 0:W]
img = np.zeros((H, W, 3), np.float64)
img[..., 0] = 255 * x / (W - 1)
img[..., 1] = 255 * y / (H - 1)
img[..., 2] = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
img += rng.normal(0, 20, img.shape)
img[10:20, 5:15] = [255, 255, 255]      # hard-edged blocks: ringing and clipping at 0/255
img[25:30, 30:44] = [0, 0, 0]
src = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")
src.save(f"{OUT}/src.png")

for (w, h) in [(24, 16), (64, 48), (45, 20), (13, 37), (8, 8), (100, 91), (40, 32)]:
    src.resize((w, h), Image.LANCZOS).save(f"{OUT}/lanczos_{w}x{h}.png")

a = np.dstack([np.asarray(src)[:12, :16], (np.arange(12 * 16).reshape(12, 16) * 7 % 256).astype(np.uint8)])
rgba = Image.fromarray(a, "RGBA")
rgba.save(f"{OUT}/rgba.png")
rgba.convert("RGB").save(f"{OUT}/rgba_rgb.png")
gray = src.crop((0, 0, 16, 12)).convert("L")
gray.save(f"{OUT}/gray.png")
gray.convert("RGB").save(f"{OUT}/gray_rgb.png")
pal = src.crop((0, 0, 16, 12)).convert("P", palette=Image.ADAPTIVE, colors=16)
pal.save(f"{OUT}/pal.png")
pal.convert("RGB").save(f"{OUT}/pal_rgb.png")

photo = src.resize((40, 32), Image.LANCZOS)
photo.save(f"{OUT}/photo.jpg", quality=90, subsampling=2)
Image.open(f"{OUT}/photo.jpg").convert("RGB").save(f"{OUT}/photo_pil.png")
from PIL import ImageOps
for k in range(1, 9):  # EXIF orientation: diffusers.utils.load_image applies ImageOps.exif_transpose
    ex = Image.Exif()
    ex[0x0112] = k
    photo.save(f"{OUT}/orient_{k}.jpg", quality=90, subsampling=2, exif=ex.tobytes())
    ImageOps.exif_transpose(Image.open(f"{OUT}/orient_{k}.jpg")).convert("RGB").save(f"{OUT}/orient_{k}_pil.png")
from PIL.PngImagePlugin import PngInfo
tiny = Image.fromarray(np.asarray(src)[:2, :2].copy(), "RGB")
for name, text, zip_ in [("text_latin1", "café, Steps: 20", False), ("text_utf8", "a 猫\nSteps: 20", False),
                         ("text_zip_latin1", "zipped café " * 20, True), ("text_zip_utf8", "zipped 猫 " * 20, True)]:
    info = PngInfo()
    info.add_text("parameters", text, zip=zip_)
    tiny.save(f"{OUT}/{name}.png", pnginfo=info)
print("wrote", sorted(os.listdir(OUT)))
