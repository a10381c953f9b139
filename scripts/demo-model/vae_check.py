"""Show VAE reconstructions from a training checkpoint or an exported file: top row scenes, bottom row decodes.

  /usr/bin/python3 scripts/demo-model/vae_check.py [/var/tmp/sdgen-demo/vae.pt | models/demo.safetensors] out.png
"""
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data     # noqa: E402
import export   # noqa: E402
import models   # noqa: E402

torch.set_num_threads(1)
src = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/sdgen-demo/vae.pt"
vae = models.VAE(models.CFG)
if src.endswith(".pt"):
    vae.load_state_dict(torch.load(src)["vae"])
else:
    t, _ = export.load_file(src)
    export.load_into({"vae": vae}, t)
vae.eval()
imgs = [data.sample_scene(9_000_000 + i)[0] for i in range(12)]
x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
with torch.no_grad():
    m, _ = vae.encode(x)
    y = vae.decode(m)
print("latent std", m.std().item(), "x0.18215:", (m * models.SCALE_FACTOR).std().item(),
      "mse", torch.mean((y - x) ** 2).item())
y = np.round(((y.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()).astype(np.uint8)
grid = np.concatenate([np.concatenate(imgs, 1), np.concatenate(list(y), 1)], 0)
Image.fromarray(grid).save(sys.argv[2] if len(sys.argv) > 2 else "/tmp/vae_check.png")
