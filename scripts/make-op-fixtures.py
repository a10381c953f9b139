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
print("wrote", len(os.listdir(OUT)), "files to", os.path.normpath(OUT))
