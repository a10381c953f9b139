"""Fine-tune the VAE decoder (and post_quant_conv) with the encoder frozen, alongside diffusion training.

The encoder is untouched, so the latents the U-Net is trained on do not change; only the decode improves.
Reads the finished VAE checkpoint (STATE/vae.pt), writes STATE/decoder.pt (decoder + post_quant_conv state,
step, elapsed seconds) every 2 minutes; train.py's export picks it up. Resumable from decoder.pt.

  nohup nice -n 19 /usr/bin/python3 scripts/demo-model/decoder_ft.py >> /var/tmp/sdgen-demo/decoder.log 2>&1 &
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data     # noqa: E402
import models   # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--state", default="/var/tmp/sdgen-demo")
ap.add_argument("--steps", type=int, default=20000)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--lr", type=float, default=3e-4)
ap.add_argument("--seed", type=int, default=4321)
a = ap.parse_args()
torch.set_num_threads(1)

CK = os.path.join(a.state, "decoder.pt")
ck = torch.load(os.path.join(a.state, "vae.pt"))
assert ck["done"], "VAE phase not finished"
vae = models.VAE(models.CFG)
vae.load_state_dict(ck["vae"])
vae.eval()
for p in vae.parameters():
    p.requires_grad_(False)
params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
for p in params:
    p.requires_grad_(True)
opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
step, elapsed = 0, 0.0
if os.path.exists(CK):
    d = torch.load(CK)
    vae.decoder.load_state_dict(d["decoder"])
    vae.post_quant_conv.load_state_dict(d["post_quant_conv"])
    opt.load_state_dict(d["opt"])
    step, elapsed = d["step"], d["elapsed"]


def log(*x):
    print(time.strftime("%H:%M:%S"), *x, flush=True)


t0 = last = time.time()
avg = None
while step < a.steps:
    seeds = [20_000_000 + step * a.batch + i for i in range(a.batch)]
    x = torch.from_numpy(np.stack([data.sample_scene(s)[0] for s in seeds])).permute(0, 3, 1, 2).float() / 127.5 - 1
    if step % 4 != 3:
        g = torch.Generator().manual_seed(a.seed + step)
        off = torch.randint(0, 5, (a.batch, 2), generator=g) * 8
        x = torch.stack([x[i, :, oy:oy + 32, ox:ox + 32] for i, (oy, ox) in enumerate(off.tolist())])
    else:
        x = x[: a.batch // 2]
    with torch.no_grad():
        z = vae.encode(x)[0]
    y = vae.decode(z)
    loss = (y - x).abs().mean() + F.mse_loss(y, x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    step += 1
    avg = loss.item() if avg is None else 0.97 * avg + 0.03 * loss.item()
    if step % 50 == 0:
        log(f"decoder step {step} loss {loss.item():.4f} avg {avg:.4f} elapsed {elapsed + time.time() - t0:.0f}s")
    if time.time() - last > 120 or step == a.steps:
        elapsed += time.time() - t0
        t0 = time.time()
        tmp = CK + ".tmp-save"
        torch.save({"decoder": vae.decoder.state_dict(), "post_quant_conv": vae.post_quant_conv.state_dict(),
                    "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, tmp)
        os.replace(tmp, CK)
        last = time.time()
