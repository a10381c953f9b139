"""Reference PyTorch sampler for the demo model: the txt2img computation of diffusers 0.25
StableDiffusionPipeline + DDIMScheduler with the SD 1.x scheduler config, written out in plain PyTorch.

  * tokens: CLIP BPE with the merges stored in the file ("sdgen.bpe_merges"), BOS + tokens + EOS, EOS padding;
    negative prompt "" (unconditional) as the first batch entry.
  * noise: torch.Generator("cpu").manual_seed(seed), torch.randn([1, 4, H/8, W/8], float32) (diffusers'
    randn_tensor on CPU does exactly this call).
  * schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000, float32)^2, alphas_cumprod = cumprod(1 - betas)
    (DDIMScheduler scaled_linear); "leading" timesteps (i * (1000 // n)) reversed + steps_offset 1;
    set_alpha_to_one False (the final ᾱ_prev is ᾱ_0); eta 0; no clipping.
  * CFG: U-Net on [uncond; cond], g = u + scale * (c - u).
  * decode: VAE(latents / 0.18215), pixel = round(clamp(x / 2 + 0.5, 0, 1) * 255).

  /usr/bin/python3 scripts/demo-model/sample.py -m models/demo.safetensors -p "a large red circle on the left, blue background" --seed 1 -o out.png
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export   # noqa: E402
import models   # noqa: E402


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(n):
    ratio = 1000 // n
    return (np.arange(0, n) * ratio).round()[::-1].astype(np.int64) + 1


@torch.no_grad()
def generate(nets, tok, prompt, seed, steps=20, cfg=7.5, width=64, height=64, negative="", return_latents=False):
    unet, vae, text = nets["unet"], nets["vae"], nets["text"]
    ids = torch.tensor([tok(negative), tok(prompt)], dtype=torch.long)
    ctx = text(ids)
    gen = torch.Generator("cpu").manual_seed(seed)
    lat = torch.randn((1, 4, height // 8, width // 8), generator=gen, dtype=torch.float32)
    acp = alphas_cumprod()
    final = acp[0]                       # set_alpha_to_one = False
    ratio = 1000 // steps
    for t in ddim_timesteps(steps):
        inp = torch.cat([lat, lat])
        eps = unet(inp, torch.tensor([t, t]), ctx)
        u, c = eps.chunk(2)
        g = u + cfg * (c - u)
        a = acp[t]
        prev = t - ratio
        a_prev = acp[prev] if prev >= 0 else final
        x0 = (lat - (1 - a) ** 0.5 * g) / a ** 0.5
        lat = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * g
    img = vae.decode(lat / models.SCALE_FACTOR)
    img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)[0].numpy()
    px = np.round(img * 255).astype(np.uint8)
    return (px, lat) if return_latents else px


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          "../../models/demo.safetensors"))
    ap.add_argument("-p", "--prompt", required=True)
    ap.add_argument("-n", "--negative", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("-W", type=int, default=64)
    ap.add_argument("-H", type=int, default=64)
    ap.add_argument("-o", "--out", default="out.png")
    a = ap.parse_args()
    torch.set_num_threads(1)
    nets, tok, _ = export.load_model(a.model)
    px = generate(nets, tok, a.prompt, a.seed, a.steps, a.cfg, a.W, a.H, a.negative)
    from PIL import Image
    Image.fromarray(px).save(a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
