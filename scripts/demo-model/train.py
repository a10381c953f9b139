"""Train the sdgen demo model: VAE, then latent pool, then text encoder + U-Net (epsilon DDPM objective).

Resumable: every phase checkpoints (model + optimizer + RNG + elapsed time) under --state (default
/var/tmp/sdgen-demo/), and the diffusion phase exports the current EMA weights to --out
(models/demo.safetensors) regularly. With no checkpoint but an existing export, training resumes from the
exported weights (fresh optimizer). Run it in the background, e.g.

  nohup nice -n 19 /usr/bin/python3 scripts/demo-model/train.py > /var/tmp/sdgen-demo/train.log 2>&1 &
"""
import argparse
import copy
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe           # noqa: E402
import data          # noqa: E402
import export        # noqa: E402
import models        # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--state", default="/var/tmp/sdgen-demo")
ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../models/demo.safetensors"))
ap.add_argument("--vae-steps", type=int, default=1200)
ap.add_argument("--vae-batch", type=int, default=8)
ap.add_argument("--pool", type=int, default=4096, help="scenes encoded before diffusion starts")
ap.add_argument("--pool-grow", type=int, default=4, help="new scenes encoded per diffusion step")
ap.add_argument("--pool-max", type=int, default=100000)
ap.add_argument("--steps", type=int, default=20000, help="diffusion steps")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--export-every", type=float, default=600.0, help="seconds between exports")
ap.add_argument("--threads", type=int, default=1, help="1: with nice 19 on a loaded 2-core machine, 2 OpenMP threads stall on barriers (measured 6-15x slower)")
ap.add_argument("--seed", type=int, default=1234)
ap.add_argument("--decay-start", type=int, default=0,
                help="if > 0: from this diffusion step the learning rate falls linearly to 5%% of --lr over "
                     "--decay-steps steps (a final cool-down), then stays there")
ap.add_argument("--decay-steps", type=int, default=2000)
ap.add_argument("--rewarm", type=int, default=200,
                help="after resuming without optimizer state (a checkpoint from grow.py): warm-up steps")
ap.add_argument("--clip-weight", type=float, default=0.0,
                help="if > 0: add this times a CLIP-style contrastive loss between the text encoder's pooled (EOS) "
                     "embedding and a small encoder of the clean latent (a training aid; not exported)")
ap.add_argument("--high-t", type=float, default=0.0,
                help="this fraction of each batch draws its timestep from [500, 1000) instead of [0, 1000)")
ap.add_argument("--focus", type=float, default=0.0,
                help="if > 0: draw pool entries with one shape on a solid background (the evaluated kind of "
                     "scene) with this probability, the rest uniformly")
args = ap.parse_args()

torch.set_num_threads(args.threads)
os.makedirs(args.state, exist_ok=True)
OUT = os.path.abspath(args.out)
CK_VAE = os.path.join(args.state, "vae.pt")
CK_POOL = os.path.join(args.state, "pool.pt")
CK_DIFF = os.path.join(args.state, "diffusion.pt")

merges = bpe.build_merges()
MERGES_TXT = bpe.merges_text(merges)
tok = bpe.Tokenizer(MERGES_TXT)
nets = models.build(tok.vocab_size)
vae, unet, text = nets["vae"], nets["unet"], nets["text"]
print(f"vocab {tok.vocab_size}  params unet {models.n_params(unet)} text {models.n_params(text)} "
      f"vae {models.n_params(vae)}", flush=True)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def save_atomic(obj, path):
    torch.save(obj, path + ".tmp-save")
    os.replace(path + ".tmp-save", path)


def batch_images(seeds):
    imgs, caps = [], []
    for s in seeds:
        im, cap, _ = data.sample_scene(int(s))
        imgs.append(im)
        caps.append(cap)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, caps


elapsed = {"vae": 0.0, "pool": 0.0, "diffusion": 0.0}
resumed_from_export = False

# ------------------------------------------------------------------------------------- phase 1: VAE
vae_done = False
if os.path.exists(CK_VAE):
    ck = torch.load(CK_VAE)
    vae.load_state_dict(ck["vae"])
    elapsed.update(ck["elapsed"])
    vae_done = ck["done"]
    vae_step = ck["step"]
    vae_opt_state = ck["opt"]
elif os.path.exists(OUT) and not os.path.exists(CK_DIFF):
    # no checkpoints at all: continue from the exported file (its VAE is already renormalised)
    t, meta = export.load_file(OUT)
    export.load_into(nets, t)
    if "sdgen.demo.elapsed" in meta:
        elapsed.update(json.loads(meta["sdgen.demo.elapsed"]))
    vae_done = True
    resumed_from_export = True
    vae_step, vae_opt_state = args.vae_steps, None
    log("resumed from export", OUT, meta.get("sdgen.demo.diffusion_steps"))
else:
    vae_step, vae_opt_state = 0, None

if not vae_done:
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    if vae_opt_state:
        opt.load_state_dict(vae_opt_state)
    with torch.no_grad():
        # start the posterior with a tiny variance (logvar ~ -8): with the default init (logvar ~ 0) the sampling
        # noise swamps the small initial means and reconstruction learns very slowly
        zc = models.CFG["z"]
        if vae.quant_conv.bias[zc:].mean() > -6.0:
            vae.quant_conv.bias[zc:] = -8.0
            vae.quant_conv.weight[zc:] *= 0.01
    t0 = time.time()
    last_ck = time.time()
    vae.train()
    while vae_step < args.vae_steps:
        # data seeds depend only on the step: resumable and reproducible
        seeds = [1_000_000 + vae_step * args.vae_batch + i for i in range(args.vae_batch)]
        x, _ = batch_images(seeds)
        if vae_step % 4 != 3:
            # cheap steps: one 32x32 crop (on the 8-pixel latent grid) per scene; every 4th step full
            # 64x64 scenes (half the batch) so the mid attention also sees the full 8x8 latent grid
            gc = torch.Generator().manual_seed(args.seed * 3 + vae_step)
            off = torch.randint(0, 5, (len(seeds), 2), generator=gc) * 8
            x = torch.stack([x[i, :, oy:oy + 32, ox:ox + 32] for i, (oy, ox) in enumerate(off.tolist())])
        else:
            x = x[: max(1, len(seeds) // 2)]
        mean, logvar = vae.encode(x)
        gs = torch.Generator().manual_seed(args.seed * 1000 + vae_step)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gs)
        y = vae.decode(z)
        rec = (y - x).abs().mean() + F.mse_loss(y, x)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        loss = rec + 1e-6 * kl
        lr = 1e-3 * min(1.0, (vae_step + 1) / 100) * (0.2 if vae_step > 0.8 * args.vae_steps else 1.0)
        for pg in opt.param_groups:
            pg["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        vae_step += 1
        if vae_step % 50 == 0:
            el = elapsed["vae"] + time.time() - t0
            log(f"vae step {vae_step} rec {rec.item():.4f} kl {kl.item():.1f} "
                f"zstd {mean.std().item():.3f} elapsed {el:.0f}s")
        if time.time() - last_ck > 120 or vae_step == args.vae_steps:
            elapsed["vae"] += time.time() - t0
            t0 = time.time()
            done = vae_step >= args.vae_steps
            if done:
                # measure the latent statistics on fresh scenes and renormalise (exact, see VAE.renormalise)
                vae.eval()
                with torch.no_grad():
                    zs = []
                    for b in range(16):
                        x, _ = batch_images([5_000_000 + b * 64 + i for i in range(64)])
                        zs.append(vae.encode(x)[0])
                    zs = torch.cat(zs)
                    mu = zs.mean(dim=(0, 2, 3))
                    sd = zs.std(dim=(0, 2, 3))
                    log("latent mean", mu.tolist(), "std", sd.tolist())
                    vae.renormalise(mu, sd)
                    z2 = vae.encode(x)[0] * models.SCALE_FACTOR
                    log("after renormalisation: latents*0.18215 mean", z2.mean().item(), "std", z2.std().item())
            save_atomic({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": vae_step,
                         "elapsed": elapsed, "done": done}, CK_VAE)
            last_ck = time.time()
    vae_done = True
    del opt

vae.eval()
for p in vae.parameters():
    p.requires_grad_(False)

# ------------------------------------------------------------------------------------- phase 2: latent pool
if os.path.exists(CK_POOL):
    pool = torch.load(CK_POOL)
else:
    pool = {"lat": torch.zeros(0, 4, 8, 8, dtype=torch.float16), "ids": torch.zeros(0, 77, dtype=torch.int16)}
if pool["lat"].shape[0] < args.pool:
    t0 = time.time()
    lat, ids = [pool["lat"]], [pool["ids"]]
    n = pool["lat"].shape[0]
    chunk = 256
    with torch.no_grad():
        while n < args.pool:
            seeds = list(range(n, min(n + chunk, args.pool)))
            x, caps = batch_images(seeds)
            m, _ = vae.encode(x)
            lat.append((m * models.SCALE_FACTOR).half())
            ids.append(torch.tensor([tok(c) for c in caps], dtype=torch.int16))
            n += len(seeds)
            if n % 2560 == 0 or n >= args.pool:
                pool = {"lat": torch.cat(lat), "ids": torch.cat(ids)}
                lat, ids = [pool["lat"]], [pool["ids"]]
                elapsed["pool"] += time.time() - t0
                t0 = time.time()
                save_atomic(pool, CK_POOL)
                log(f"pool {n}/{args.pool}  latent std {pool['lat'].float().std().item():.3f}")
# preallocated pool; it grows by --pool-grow freshly encoded scenes (seeds N, N+1, ...) every diffusion step
N = pool["lat"].shape[0]
LAT = torch.zeros(args.pool_max, 4, 8, 8)
IDS = torch.zeros(args.pool_max, 77, dtype=torch.long)
LAT[:N] = pool["lat"].float()
IDS[:N] = pool["ids"].long()
del pool


def grow_pool(k):
    global N
    k = min(k, args.pool_max - N)
    if k <= 0:
        return
    x, caps = batch_images(range(N, N + k))
    with torch.no_grad():
        LAT[N:N + k] = (vae.encode(x)[0] * models.SCALE_FACTOR).half().float()
    IDS[N:N + k] = torch.tensor([tok(c) for c in caps], dtype=torch.long)
    N += k


def save_pool():
    save_atomic({"lat": LAT[:N].half(), "ids": IDS[:N].to(torch.int16)}, CK_POOL)

# ------------------------------------------------------------------------------------- phase 3: diffusion
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
acp = torch.cumprod(1.0 - betas, dim=0)
snr = acp / (1.0 - acp)
EMPTY = torch.tensor(tok(""), dtype=torch.long)
AND_ID, GRADIENT_ID = tok("and")[1], tok("gradient")[1]

params = list(unet.parameters()) + list(text.parameters())
opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text)
step = 0
rewarm_from = None
if os.path.exists(CK_DIFF):
    ck = torch.load(CK_DIFF)
    unet.load_state_dict(ck["unet"])
    text.load_state_dict(ck["text"])
    ema_unet.load_state_dict(ck["ema_unet"])
    ema_text.load_state_dict(ck["ema_text"])
    if ck.get("opt") is not None:
        opt.load_state_dict(ck["opt"])
    else:
        log("no optimizer state in the checkpoint (grow.py): fresh AdamW, learning rate ramped over --rewarm steps")
        rewarm_from = ck["step"]
    step = ck["step"]
    elapsed.update(ck["elapsed"])
    log("resumed diffusion at step", step)
elif resumed_from_export:
    t, meta = export.load_file(OUT)
    export.load_into({"unet": ema_unet, "text": ema_text}, t)
    step = int(meta.get("sdgen.demo.diffusion_steps", "0"))
for p in list(ema_unet.parameters()) + list(ema_text.parameters()):
    p.requires_grad_(False)

# CLIP-style contrastive aid (--clip-weight): after ~6,000 steps of the epsilon objective alone the text
# embeddings of "on the left" and "on the right" prompts still differed by ~1 (against 30-80 for a colour
# change): the denoising loss gives position words almost no gradient until the U-Net already uses them. CLIP
# learns its text tower by matching captions to images; here the pooled text embedding is matched to an
# embedding of the clean latent of the same scene, against the other scenes of the batch (InfoNCE both ways).
class LatentEncoder(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 64, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Flatten(), torch.nn.Linear(64 * 16, d))

    def forward(self, z):
        return self.net(z)


EOS_ID = tok("")[1]
# hard negatives for the contrastive aid: in-batch captions almost always differ in colour or background, so
# matching never needed the position words; each caption with one position phrase also gets a copy with
# another position (preposition + noun tokens swapped), which the latent must be told apart from
POS_PHRASES = [(tok(a)[1], tok(b)[1]) for a, b in
               (("on", "left"), ("on", "right"), ("at", "top"), ("at", "bottom"), ("in", "centre"))]
POS_NOUNS = {tok(w)[1]: i for i, w in enumerate(("left", "right", "top", "bottom", "centre"))}
POS_NOUNS.update({tok("center")[1]: 4, tok("middle")[1]: 4})


def position_swapped(ids, g):
    """-> (copies of ids with the position phrase replaced by another one, row indices they came from)"""
    out, rows = [], []
    for r in range(ids.shape[0]):
        ks = [k for k in range(2, ids.shape[1]) if int(ids[r, k]) in POS_NOUNS]
        if len(ks) != 1:
            continue
        k = ks[0]
        cur = POS_NOUNS[int(ids[r, k])]
        other = (cur + 1 + int(torch.randint(0, 4, (1,), generator=g))) % 5
        v = ids[r].clone()
        v[k - 2], v[k] = POS_PHRASES[other]
        out.append(v)
        rows.append(r)
    return (torch.stack(out) if out else None), rows
aux = torch.nn.ModuleDict({"img": LatentEncoder(64), "txt": torch.nn.Linear(models.CFG["text_width"], 64, bias=False)})
aux_opt = torch.optim.AdamW(aux.parameters(), lr=1e-3, weight_decay=0.01)
if os.path.exists(CK_DIFF) and "aux" in ck:
    aux.load_state_dict(ck["aux"])
    aux_opt.load_state_dict(ck["aux_opt"])


def do_export(tag):
    info = {"diffusion_steps": step, "elapsed": dict(elapsed), "tag": tag}
    dec = os.path.join(args.state, "decoder.pt")
    if os.path.exists(dec):
        # decoder fine-tuned by decoder_ft.py with the encoder frozen: same latents, better decode
        try:
            d = torch.load(dec)
            vae.decoder.load_state_dict(d["decoder"])
            vae.post_quant_conv.load_state_dict(d["post_quant_conv"])
            info["decoder_ft_steps"] = d["step"]
            info["elapsed"]["decoder_ft"] = d["elapsed"]
        except Exception as e:      # a half-written file from a crash: keep the previous decoder
            log("decoder.pt not loaded:", e)
    export.export(OUT, {"unet": ema_unet, "text": ema_text, "vae": vae}, MERGES_TXT, info)
    log("exported", OUT, os.path.getsize(OUT), "bytes at step", step)


t0 = time.time()
last_ck = time.time()
last_export = time.time()
loss_avg = None
unet.train()
text.train()
while step < args.steps:
    g = torch.Generator().manual_seed(args.seed * 7 + step)
    grow_pool(args.pool_grow)
    idx = torch.randint(0, N, (args.batch,), generator=g)
    if args.focus > 0:
        # single-shape, solid-background captions: no "and", no "gradient" token
        simple = ~((IDS[:N] == AND_ID) | (IDS[:N] == GRADIENT_ID)).any(dim=1)
        sidx = simple.nonzero().flatten()
        pick = torch.rand(args.batch, generator=g) < args.focus
        idx[pick] = sidx[torch.randint(0, len(sidx), (int(pick.sum()),), generator=g)]
    x0 = LAT[idx]
    ids = IDS[idx].clone()
    drop = torch.rand(args.batch, generator=g) < 0.1
    ids[drop] = EMPTY
    t = torch.randint(0, 1000, (args.batch,), generator=g)
    if args.high_t > 0:
        # where the layout is decided: at high noise the latent shows little of it and the caption must
        hi = torch.rand(args.batch, generator=g) < args.high_t
        t[hi] = torch.randint(500, 1000, (int(hi.sum()),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    a = acp[t][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    ctx = text(ids)
    pred = unet(xt, t, ctx)
    w = torch.clamp(snr[t], max=5.0) / snr[t]          # min-SNR-5 weighting (Hang et al. 2023) for eps
    loss = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
    loss_w = (loss * w).mean()
    lclip = None
    keep = ~drop
    if args.clip_weight > 0 and int(keep.sum()) > 1:
        eos_pos = (ids == EOS_ID).int().argmax(dim=1)            # first EOS = CLIP's pooled position
        te = F.normalize(aux["txt"](ctx[torch.arange(args.batch), eos_pos][keep]), dim=-1)
        ie = F.normalize(aux["img"](x0[keep]), dim=-1)
        logits = te @ ie.t() * 14.3                              # CLIP's initial temperature 1/0.07
        lab = torch.arange(te.shape[0])
        sw, _ = position_swapped(ids[keep], g)
        if sw is not None:
            ts = F.normalize(aux["txt"](text(sw)[torch.arange(sw.shape[0]), (sw == EOS_ID).int().argmax(dim=1)]), dim=-1)
            li = ie @ torch.cat([te, ts]).t() * 14.3                  # each latent: all captions + swapped ones
        else:
            li = logits.t()
        lclip = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(li, lab))
        loss_w = loss_w + args.clip_weight * lclip
    lr = args.lr * min(1.0, (step + 1) / 300)
    if rewarm_from is not None:
        lr *= min(1.0, (step - rewarm_from + 1) / max(1, args.rewarm))
    if args.decay_start > 0 and step >= args.decay_start:
        lr = args.lr * max(0.05, 1.0 - 0.95 * (step - args.decay_start) / max(1, args.decay_steps))
    for pg in opt.param_groups:
        pg["lr"] = lr
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    loss_w.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if lclip is not None:
        aux_opt.step()
    step += 1
    d = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for src, dst in ((unet, ema_unet), (text, ema_text)):
            for ps, pd in zip(src.parameters(), dst.parameters()):
                pd.mul_(d).add_(ps.detach(), alpha=1 - d)
    lv = loss.mean().item()
    loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
    if step % 25 == 0:
        el = elapsed["diffusion"] + time.time() - t0
        log(f"step {step} loss {lv:.4f} avg {loss_avg:.4f} lr {lr:.2e} pool {N} elapsed {el:.0f}s "
            f"({el / max(step, 1):.2f}s/step)" + (f" clip {lclip.item():.3f}" if lclip is not None else ""))
    if time.time() - last_ck > 300 or step == args.steps:
        elapsed["diffusion"] += time.time() - t0
        t0 = time.time()
        save_atomic({"unet": unet.state_dict(), "text": text.state_dict(), "ema_unet": ema_unet.state_dict(),
                     "ema_text": ema_text.state_dict(), "opt": opt.state_dict(), "step": step,
                     "elapsed": elapsed, "pool_n": N, "aux": aux.state_dict(), "aux_opt": aux_opt.state_dict()},
                    CK_DIFF)
        save_pool()
        last_ck = time.time()
        log("checkpoint", CK_DIFF)
    if time.time() - last_export > args.export_every or step == args.steps or \
            os.path.exists(os.path.join(args.state, "EXPORT_NOW")):
        if os.path.exists(os.path.join(args.state, "EXPORT_NOW")):
            os.remove(os.path.join(args.state, "EXPORT_NOW"))
        elapsed["diffusion"] += time.time() - t0
        t0 = time.time()
        do_export("training")
        last_export = time.time()
log("done", elapsed)
