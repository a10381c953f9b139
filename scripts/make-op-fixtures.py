#!/usr/bin/python3
"""Write the op-level fixtures for tests/test_ops.c: small random inputs and the PyTorch
(1.13, CPU, float32) outputs of the operations in include/sdgen/ops.h, as .npy files in
tests/fixtures/ops/. The references are computed the way diffusers / transformers compute
them (F.conv2d, F.group_norm, F.layer_norm, baddbmm+softmax+bmm attention,
get_timestep_embedding with flip_sin_to_cos=True, downscale_freq_shift=0).

Run: /usr/bin/python3 scripts/make-op-fixtures.py   (deterministic; seed 1234)
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops")
os.makedirs(OUT, exist_ok=True)


def save(name, t):
    np.save(os.path.join(OUT, name + ".npy"), t.detach().contiguous().numpy().astype(np.float32))


def rnd(*shape, scale=1.0, shift=0.0):
    return torch.randn(*shape) * scale + shift


# linear (with and without bias), leading dims [2,5]
x = rnd(2, 5, 12); w = rnd(7, 12) / math.sqrt(12); b = rnd(7) * 0.1
save("linear_x", x); save("linear_w", w); save("linear_b", b)
save("linear_y", F.linear(x, w, b)); save("linear_nb_y", F.linear(x, w))

# conv 3x3 stride 1 pad 1, with bias
x = rnd(2, 3, 7, 6); w = rnd(5, 3, 3, 3) / math.sqrt(27); b = rnd(5) * 0.1
save("conv3_x", x); save("conv3_w", w); save("conv3_b", b); save("conv3_y", F.conv2d(x, w, b, 1, 1))
# conv 1x1, with bias
x = rnd(2, 6, 5, 4); w = rnd(3, 6, 1, 1) / math.sqrt(6); b = rnd(3) * 0.1
save("conv1_x", x); save("conv1_w", w); save("conv1_b", b); save("conv1_y", F.conv2d(x, w, b))
# conv 3x3 stride 2 with asymmetric padding (0,1,0,1) as the VAE encoder Downsample:
# F.pad(x, (0, 1, 0, 1)) then conv stride 2 pad 0
x = rnd(1, 4, 9, 8); w = rnd(6, 4, 3, 3) / math.sqrt(36); b = rnd(6) * 0.1
save("conv_s2a_x", x); save("conv_s2a_w", w); save("conv_s2a_b", b)
save("conv_s2a_y", F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, 2, 0))
# conv 3x3 stride 2 pad 1 (U-Net Downsample) on an odd size, no bias
x = rnd(2, 4, 9, 7); w = rnd(3, 4, 3, 3) / math.sqrt(36)
save("conv_s2_x", x); save("conv_s2_w", w); save("conv_s2_y", F.conv2d(x, w, None, 2, 1))

# GroupNorm eps 1e-5 (res blocks) and eps 1e-6 with a large mean (accuracy of the statistics)
x = rnd(2, 8, 5, 3); g = 1 + 0.1 * rnd(8); b = 0.1 * rnd(8)
save("gn_x", x); save("gn_g", g); save("gn_b", b)
save("gn_y", F.group_norm(x, 4, g, b, 1e-5)); save("gn_silu_y", F.silu(F.group_norm(x, 4, g, b, 1e-5)))
x = rnd(1, 6, 4, 4, scale=0.01, shift=3.0)
g = 1 + 0.1 * rnd(6); b = 0.1 * rnd(6)
save("gn6_x", x); save("gn6_g", g); save("gn6_b", b); save("gn6_y", F.group_norm(x, 2, g, b, 1e-6))

# LayerNorm eps 1e-5
x = rnd(3, 4, 10, shift=0.5); g = 1 + 0.1 * rnd(10); b = 0.1 * rnd(10)
save("ln_x", x); save("ln_g", g); save("ln_b", b); save("ln_y", F.layer_norm(x, (10,), g, b, 1e-5))

# activations
x = torch.linspace(-8, 8, 1001)
save("act_x", x); save("silu_y", F.silu(x)); save("gelu_y", F.gelu(x))
save("quick_gelu_y", x * torch.sigmoid(1.702 * x))
x = rnd(2, 3, 16)
h, gate = x.chunk(2, dim=-1)
save("geglu_x", x); save("geglu_y", h * F.gelu(gate))
x = rnd(4, 37, scale=3.0)
save("softmax_x", x); save("softmax_y", torch.softmax(x, dim=-1))

# upsample nearest x2
x = rnd(2, 3, 3, 5)
save("up_x", x); save("up_y", F.interpolate(x, scale_factor=2.0, mode="nearest"))


def attention(q, k, v, heads, causal):
    """diffusers AttnProcessor: heads to batch, baddbmm(beta=0, alpha=scale), softmax, bmm."""
    b, lq, hd = q.shape
    lk = k.shape[1]
    d = hd // heads

    def split(t):
        return t.reshape(b, t.shape[1], heads, d).permute(0, 2, 1, 3).reshape(b * heads, t.shape[1], d)

    qh, kh, vh = split(q), split(k), split(v)
    s = torch.baddbmm(torch.empty(b * heads, lq, lk), qh, kh.transpose(-1, -2), beta=0, alpha=1 / math.sqrt(d))
    if causal:
        mask = torch.full((lq, lk), torch.finfo(torch.float32).min).triu(1)
        s = s + mask
    p = s.softmax(dim=-1)
    o = torch.bmm(p, vh)
    return o.reshape(b, heads, lq, d).permute(0, 2, 1, 3).reshape(b, lq, hd)


# cross-attention, 2 heads, Lq = 300 (more than one block of 256 queries), Lk = 77
q = rnd(2, 300, 16); k = rnd(2, 77, 16); v = rnd(2, 77, 16)
save("attn_q", q); save("attn_k", k); save("attn_v", v); save("attn_y", attention(q, k, v, 2, False))
# causal self-attention, 4 heads (CLIP text)
q = rnd(2, 77, 32); k = rnd(2, 77, 32); v = rnd(2, 77, 32)
save("attnc_q", q); save("attnc_k", k); save("attnc_v", v); save("attnc_y", attention(q, k, v, 4, True))
# causal self-attention with Lq > block: 1 head, 290 tokens
q = rnd(1, 290, 8); k = rnd(1, 290, 8); v = rnd(1, 290, 8)
save("attnc2_q", q); save("attnc2_k", k); save("attnc2_v", v); save("attnc2_y", attention(q, k, v, 1, True))


def timestep_embedding(t, dim):
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32)
    exponent = exponent / (half - 0)
    emb = torch.exp(exponent)
    emb = t[:, None].float() * emb[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


t = torch.tensor([0.0, 1.0, 999.0, 749.25, 500.5, 37.0])
save("temb_t", t); save("temb320_y", timestep_embedding(t, 320)); save("temb32_y", timestep_embedding(t, 32))


# ---------------------------------------------------------------------------------------------
# U-Net at a latent size that is not a multiple of 2 per level (golden cases are all even).
# A small functional re-statement of the LDM UNetModel (openaimodel.py; diffusers
# UNet2DConditionModel computes the same) run on models/tiny-sd1.safetensors, checked first
# against the golden p1 unet0_out, then evaluated on a 9×13 latent (72×104 image): the downsample
# conv gives 5×7 and the upsampler interpolates (nearest) back to the skip's 9×13, as diffusers
# does when it forwards upsample_size.
import json
import struct

SHARED = os.environ.get("SDGEN_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))


def load_safetensors(path, prefix):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or not name.startswith(prefix):
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name[len(prefix):]] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy()).reshape(info["shape"])
    return out


def unet_ref(W, x, t, ctx, chans=(32, 64), attn_levels=(1, 0), nres=2, heads=8):
    def gn(h, pre, eps):
        return F.group_norm(h, 32, W[pre + ".weight"], W[pre + ".bias"], eps)

    def res(h, pre):
        y = F.conv2d(F.silu(gn(h, pre + ".in_layers.0", 1e-5)), W[pre + ".in_layers.2.weight"], W[pre + ".in_layers.2.bias"], padding=1)
        y = y + F.linear(F.silu(emb), W[pre + ".emb_layers.1.weight"], W[pre + ".emb_layers.1.bias"])[:, :, None, None]
        y = F.conv2d(F.silu(gn(y, pre + ".out_layers.0", 1e-5)), W[pre + ".out_layers.3.weight"], W[pre + ".out_layers.3.bias"], padding=1)
        if pre + ".skip_connection.weight" in W:
            h = F.conv2d(h, W[pre + ".skip_connection.weight"], W[pre + ".skip_connection.bias"])
        return h + y

    def st(h, pre):
        b, c, hh, ww = h.shape
        y = gn(h, pre + ".norm", 1e-6)
        y = F.conv2d(y, W[pre + ".proj_in.weight"], W[pre + ".proj_in.bias"])
        y = y.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        bp = pre + ".transformer_blocks.0."
        for a, kv in (("attn1", None), ("attn2", ctx)):
            n = F.layer_norm(y, (c,), W[bp + ("norm1" if a == "attn1" else "norm2") + ".weight"],
                             W[bp + ("norm1" if a == "attn1" else "norm2") + ".bias"], 1e-5)
            src = n if kv is None else kv
            q = F.linear(n, W[bp + a + ".to_q.weight"])
            k = F.linear(src, W[bp + a + ".to_k.weight"])
            v = F.linear(src, W[bp + a + ".to_v.weight"])
            y = y + F.linear(attention(q, k, v, heads, False), W[bp + a + ".to_out.0.weight"], W[bp + a + ".to_out.0.bias"])
        n = F.layer_norm(y, (c,), W[bp + "norm3.weight"], W[bp + "norm3.bias"], 1e-5)
        p = F.linear(n, W[bp + "ff.net.0.proj.weight"], W[bp + "ff.net.0.proj.bias"])
        hpart, gate = p.chunk(2, dim=-1)
        y = y + F.linear(hpart * F.gelu(gate), W[bp + "ff.net.2.weight"], W[bp + "ff.net.2.bias"])
        y = y.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        y = F.conv2d(y, W[pre + ".proj_out.weight"], W[pre + ".proj_out.bias"])
        return y + h

    temb = timestep_embedding(t, chans[0])
    emb = F.linear(F.silu(F.linear(temb, W["time_embed.0.weight"], W["time_embed.0.bias"])), W["time_embed.2.weight"], W["time_embed.2.bias"])
    h = F.conv2d(x, W["input_blocks.0.0.weight"], W["input_blocks.0.0.bias"], padding=1)
    skips = [h]
    k = 1
    for lvl in range(len(chans)):
        for _ in range(nres):
            h = res(h, "input_blocks.%d.0" % k)
            if attn_levels[lvl]:
                h = st(h, "input_blocks.%d.1" % k)
            skips.append(h)
            k += 1
        if lvl + 1 < len(chans):
            h = F.conv2d(h, W["input_blocks.%d.0.op.weight" % k], W["input_blocks.%d.0.op.bias" % k], stride=2, padding=1)
            skips.append(h)
            k += 1
    h = res(h, "middle_block.0")
    h = st(h, "middle_block.1")
    h = res(h, "middle_block.2")
    ups = len(chans) - 1
    forward_size = any(s % (2 ** ups) for s in x.shape[2:])
    k = 0
    for lvl in reversed(range(len(chans))):
        for r in range(nres + 1):
            h = torch.cat([h, skips.pop()], dim=1)
            h = res(h, "output_blocks.%d.0" % k)
            idx = 1
            if attn_levels[lvl]:
                h = st(h, "output_blocks.%d.1" % k)
                idx = 2
            if lvl > 0 and r == nres:
                if forward_size:
                    h = F.interpolate(h, size=skips[-1].shape[2:], mode="nearest")
                else:
                    h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = F.conv2d(h, W["output_blocks.%d.%d.conv.weight" % (k, idx)], W["output_blocks.%d.%d.conv.bias" % (k, idx)], padding=1)
            k += 1
    h = F.silu(gn(h, "out.0", 1e-5))
    return F.conv2d(h, W["out.2.weight"], W["out.2.bias"], padding=1)


W = load_safetensors(os.path.join(SHARED, "golden", "models", "tiny-sd1.safetensors"), "model.diffusion_model.")
case = os.path.join(SHARED, "golden", "cases", "p1-tiny-sd1-ddim")
gx = torch.from_numpy(np.load(os.path.join(case, "unet0_sample.npy")))
gt = torch.from_numpy(np.load(os.path.join(case, "unet0_timestep.npy")).astype(np.float32)).expand(gx.shape[0])
gc = torch.from_numpy(np.load(os.path.join(case, "unet0_context.npy")))
with torch.no_grad():
    err = (unet_ref(W, gx, gt, gc) - torch.from_numpy(np.load(os.path.join(case, "unet0_out.npy")))).abs().max().item()
print("re-statement vs golden p1 unet0_out: max abs %.3g" % err)
assert err < 1e-5
x = rnd(1, 4, 9, 13)
t = torch.tensor([637.5])
c = rnd(1, 77, 64)
with torch.no_grad():
    y = unet_ref(W, x, t, c)
save("unet_odd_x", x); save("unet_odd_t", t); save("unet_odd_ctx", c); save("unet_odd_y", y)
print("wrote unet_odd_* (tiny-sd1, latent 9x13)")
print("wrote", len(os.listdir(OUT)), "files to", os.path.normpath(OUT))
