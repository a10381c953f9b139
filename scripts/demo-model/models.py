"""The three networks of the demo model, written to match the CompVis/LDM modules of SD 1.x exactly, with
module attribute names chosen so that state_dict() keys are the LDM single-file tensor names:

  U-Net  -> "model.diffusion_model." + key   (ldm.modules.diffusionmodules.openaimodel.UNetModel)
  VAE    -> "first_stage_model." + key       (ldm.models.autoencoder.AutoencoderKL, Encoder/Decoder)
  text   -> "cond_stage_model.transformer." + key   (transformers CLIPTextModel, HF names)
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------- config
CFG = {
    "unet_channels": 32, "unet_mult": (1, 2), "unet_res": 2, "unet_attn_levels": (0, 1), "unet_heads": 8,
    "text_width": 64, "text_layers": 2, "text_heads": 1, "text_mlp": 256,
    "vae_ch": 32, "vae_mult": (1, 1, 2, 2), "vae_res": 1, "z": 4,
}
SCALE_FACTOR = 0.18215


# --------------------------------------------------------------------------------------------- U-Net
def timestep_embedding(t, dim, max_period=10000):
    # LDM openaimodel.timestep_embedding: cos first, then sin; freqs exp(-ln(max_period) * i / half)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def gn(c, eps=1e-5):
    return nn.GroupNorm(32, c, eps=eps)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.in_layers = nn.Sequential(gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(temb, cout))
        self.out_layers = nn.Sequential(gn(cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb, ctx=None):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, c = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.to_k(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        v = self.to_v(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) * (c // h) ** -0.5, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, n, c)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))
        self.attn2 = CrossAttention(dim, ctx_dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        x = self.ff.net(self.norm3(x)) + x
        return x


class SpatialTransformer(nn.Module):
    def __init__(self, c, ctx_dim, heads):
        super().__init__()
        self.norm = gn(c, 1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, ctx_dim, heads)])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, emb, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        h = h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb=None, ctx=None):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, emb=None, ctx=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvIn(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)


class Seq(nn.ModuleList):
    def forward(self, x, emb, ctx):
        for m in self:
            x = m(x, emb, ctx)
        return x


class ConvBlock(nn.Conv2d):
    def forward(self, x, emb=None, ctx=None):
        return super().forward(x)


class UNet(nn.Module):
    def __init__(self, cfg, ctx_dim):
        super().__init__()
        mc = cfg["unet_channels"]
        mult = cfg["unet_mult"]
        nres = cfg["unet_res"]
        heads = cfg["unet_heads"]
        attn = cfg["unet_attn_levels"]
        temb = mc * 4
        self.mc = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.input_blocks = nn.ModuleList([Seq([ConvBlock(4, mc, 3, padding=1)])])
        chans = [mc]
        ch = mc
        for lvl, m in enumerate(mult):
            for _ in range(nres):
                layers = [ResBlock(ch, m * mc, temb)]
                ch = m * mc
                if lvl in attn:
                    layers.append(SpatialTransformer(ch, ctx_dim, heads))
                self.input_blocks.append(Seq(layers))
                chans.append(ch)
            if lvl != len(mult) - 1:
                self.input_blocks.append(Seq([Downsample(ch)]))
                chans.append(ch)
        self.middle_block = Seq([ResBlock(ch, ch, temb), SpatialTransformer(ch, ctx_dim, heads),
                                 ResBlock(ch, ch, temb)])
        self.output_blocks = nn.ModuleList()
        for lvl, m in list(enumerate(mult))[::-1]:
            for i in range(nres + 1):
                layers = [ResBlock(ch + chans.pop(), m * mc, temb)]
                ch = m * mc
                if lvl in attn:
                    layers.append(SpatialTransformer(ch, ctx_dim, heads))
                if lvl and i == nres:
                    layers.append(Upsample(ch))
                self.output_blocks.append(Seq(layers))
        self.out = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(ch, 4, 3, padding=1))

    def forward(self, x, t, ctx):
        emb = self.time_embed(timestep_embedding(t, self.mc))
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb, ctx)
            hs.append(h)
        h = self.middle_block(h, emb, ctx)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, ctx)
        return self.out(h)


# --------------------------------------------------------------------------------------------- text
class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        h = self.heads
        q = (self.q_proj(x) * (d // h) ** -0.5).view(b, n, h, d // h).transpose(1, 2)
        k = self.k_proj(x).view(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(x).view(b, n, h, d // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.fc1 = nn.Linear(d, inner)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))   # quick_gelu


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, inner):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d)
        self.mlp = CLIPMLP(d, inner)
        self.layer_norm2 = nn.LayerNorm(d)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class TextModel(nn.Module):
    def __init__(self, cfg, vocab):
        super().__init__()
        d = cfg["text_width"]
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab, d)
        self.embeddings.position_embedding = nn.Embedding(77, d)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([CLIPLayer(d, cfg["text_heads"], cfg["text_mlp"])
                                             for _ in range(cfg["text_layers"])])
        self.final_layer_norm = nn.LayerNorm(d)
        nn.init.normal_(self.embeddings.token_embedding.weight, std=0.02)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.01)

    def forward(self, ids):
        n = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:n][None]
        mask = torch.full((n, n), float("-inf")).triu(1)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


class TextEncoder(nn.Module):
    def __init__(self, cfg, vocab):
        super().__init__()
        self.text_model = TextModel(cfg, vocab)

    def forward(self, ids):
        return self.text_model(ids)


# --------------------------------------------------------------------------------------------- VAE
def swish(x):
    return x * torch.sigmoid(x)


class VResnet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = gn(cin, 1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = gn(cout, 1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)
        self.cin, self.cout = cin, cout

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.cin != self.cout:
            x = self.nin_shortcut(x)
        return x + h


class VAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = gn(c, 1e-6)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww)
        v = self.v(h).reshape(b, c, hh * ww)
        w = torch.softmax(q @ k * c ** -0.5, dim=-1)          # [b, hw(q), hw(k)]
        o = (v @ w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(o)


class VDown(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))    # LDM Downsample: asymmetric pad, then stride 2


class VUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = VResnet(c, c)
        self.attn_1 = VAttn(c)
        self.block_2 = VResnet(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mult, nres, z = cfg["vae_ch"], cfg["vae_mult"], cfg["vae_res"], cfg["z"]
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(mult):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(nres):
                lvl.block.append(VResnet(cin, ch * m))
                cin = ch * m
            if i != len(mult) - 1:
                lvl.downsample = VDown(cin)
            self.down.append(lvl)
        self.mid = Mid(cin)
        self.norm_out = gn(cin, 1e-6)
        self.conv_out = nn.Conv2d(cin, 2 * z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for b in lvl.block:
                h = b(h)
            if i != len(self.down) - 1:
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mult, nres, z = cfg["vae_ch"], cfg["vae_mult"], cfg["vae_res"], cfg["z"]
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(z, cin, 3, padding=1)
        self.mid = Mid(cin)
        ups = []
        for i in reversed(range(len(mult))):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(nres + 1):
                lvl.block.append(VResnet(cin, ch * mult[i]))
                cin = ch * mult[i]
            if i != 0:
                lvl.upsample = VUp(cin)
            ups.insert(0, lvl)
        self.up = nn.ModuleList(ups)
        self.norm_out = gn(cin, 1e-6)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, zz):
        h = self.mid(self.conv_in(zz))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for b in lvl.block:
                h = b(h)
            if i != 0:
                h = lvl.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        z = cfg["z"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 1)

    def encode(self, x):
        """x in [-1,1] -> (mean, logvar) of the posterior (AutoencoderKL, DiagonalGaussian)."""
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, zz):
        return self.decoder(self.post_quant_conv(zz))

    @torch.no_grad()
    def renormalise(self, mu, sd):
        """Exact reparametrisation z' = (z - mu)/sd * (1/SCALE_FACTOR) per channel, so that the file's latents
        times 0.18215 have zero mean and unit std (sdgen and diffusers use the fixed SD 1.x factor)."""
        k = (1.0 / SCALE_FACTOR) / sd                       # [z]
        zc = mu.numel()
        w, b = self.quant_conv.weight, self.quant_conv.bias
        w[:zc] *= k[:, None, None, None]
        b[:zc] = (b[:zc] - mu) * k
        b[zc:] += 2.0 * torch.log(k)                         # logvar of the scaled posterior
        pw, pb = self.post_quant_conv.weight, self.post_quant_conv.bias
        # post(z) = W z + b with z = z'/k + mu  ->  W' = W/k (columns), b' = b + W mu
        pb += (pw[:, :, 0, 0] @ mu)
        pw /= k[None, :, None, None]


PREFIX = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text": "cond_stage_model.transformer."}


def build(vocab, cfg=CFG):
    return {"unet": UNet(cfg, cfg["text_width"]), "vae": VAE(cfg), "text": TextEncoder(cfg, vocab)}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def default_manifest():
    """tiny-sd1's manifest in the shared reference data: $SDGEN_SHARED, else ../shared beside the checkout."""
    import os
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.environ.get("SDGEN_SHARED") or os.path.join(repo, "..", "shared")
    return os.path.join(shared, "golden", "manifests", "tiny-sd1.json")


if __name__ == "__main__":
    # Compares the modules' state-dict names with tiny-sd1's LDM names.
    # Usage: models.py [MANIFEST.json]   (default: see default_manifest)
    import json
    import sys
    nets = build(619)
    path = sys.argv[1] if len(sys.argv) > 1 else default_manifest()
    man = {n: s for n, _, s in json.load(open(path))["tensors"]}
    for k, net in nets.items():
        print(k, n_params(net))
        sd = {PREFIX[k] + n: list(v.shape) for n, v in net.state_dict().items()}
        miss = [n for n in man if n.startswith(PREFIX[k]) and n not in sd and "position_ids" not in n]
        extra = [n for n in sd if n not in man]
        print("  names in tiny-sd1 missing here:", miss[:5], len(miss), " extra here:", extra[:5], len(extra))
