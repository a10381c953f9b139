"""Add cross-attention to the U-Net's level 1 (4x4 latents) in a diffusion checkpoint, keeping what it learned.

Why: after ~3,500 steps with attention only at level 0 (8x8) and in the middle block, the model followed colour
words but ignored position words entirely (the text embeddings of "on the left" and "on the right" prompts
differed by 2 against 40-76 for a colour change, and the U-Net's outputs by <1%). At level 0 the features that
meet the text have passed two 3x3 convolutions, whose receptive field does not reach the image border from the
middle, so they do not know where they are; at level 1, after the downsampling, they do.

The new SpatialTransformers start with proj_out = 0, so the grown network computes exactly what the old one did
(checked below); the optimizer restarts (train.py ramps its learning rate up over --rewarm steps).

  /usr/bin/python3 scripts/demo-model/grow.py OLD/diffusion.pt NEW/diffusion.pt
"""
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import models  # noqa: E402


def grow_unet(old_sd, old_cfg, new_cfg, ctx_dim):
    new = models.UNet(new_cfg, ctx_dim)
    sd = new.state_dict()
    # with attention at level 1, the last level-1 output block holds [ResBlock, SpatialTransformer, Upsample]
    moved = {}
    for k, v in old_sd.items():
        k2 = k.replace("output_blocks.2.1.conv.", "output_blocks.2.2.conv.") if 1 not in old_cfg["unet_attn_levels"] else k
        moved[k2] = v
    missing = [k for k in sd if k not in moved]
    extra = [k for k in moved if k not in sd]
    assert not extra, extra
    for k in missing:
        assert ".1." in k or ".2.1." in k, k
    sd.update(moved)
    for k in missing:
        if ".proj_out." in k:
            sd[k] = torch.zeros_like(sd[k])
    new.load_state_dict(sd)
    return new, missing


def main():
    src, dst = sys.argv[1], sys.argv[2]
    ck = torch.load(src)
    old_cfg = dict(models.CFG, unet_attn_levels=(0,))
    new_cfg = dict(models.CFG, unet_attn_levels=(0, 1))
    ctx = models.CFG["text_width"]
    out = dict(ck)
    for key in ("unet", "ema_unet"):
        net, missing = grow_unet(ck[key], old_cfg, new_cfg, ctx)
        out[key] = net.state_dict()
        # the grown network computes what the old one did
        old = models.UNet(old_cfg, ctx)
        old.load_state_dict(ck[key])
        g = torch.Generator().manual_seed(0)
        x, t, c = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([999, 500, 20]), torch.randn(3, 77, ctx, generator=g)
        with torch.no_grad():
            d = (old(x, t, c) - net(x, t, c)).abs().max().item()
        print(f"{key}: {len(missing)} new tensors, max output change {d:.2e}")
        assert d < 1e-5
    out["opt"] = None
    out["grown_at_step"] = ck["step"]
    torch.save(out, dst)
    print("wrote", dst, "at step", ck["step"])


if __name__ == "__main__":
    main()
