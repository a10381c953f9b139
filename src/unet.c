/* unet.c — the SD 1.x / 2.x U-Net (see include/sdgen/unet.h).
 *
 * Structure and weight names follow CompVis LDM openaimodel.py UNetModel:
 *   time_embed.{0,2}                 Linear(mc, 4mc), SiLU, Linear(4mc, 4mc) on the sinusoidal
 *                                    embedding of t (diffusers Timesteps(flip_sin_to_cos=True, 0))
 *   input_blocks.0.0                 conv_in 3×3
 *   input_blocks.k.0 / .k.1          ResBlock / SpatialTransformer, num_res_blocks per level;
 *   input_blocks.k.0.op              Downsample (3×3 conv, stride 2, padding 1) between levels
 *   middle_block.{0,1,2}             ResBlock, SpatialTransformer, ResBlock
 *   output_blocks.k.0 / .k.1         ResBlock on cat([h, skip], dim 1) / SpatialTransformer,
 *                                    num_res_blocks + 1 per level; the last of a level (except
 *                                    level 0) ends with Upsample (.k.1 or .k.2: nearest, 3×3 conv)
 *   out.{0,2}                        GroupNorm + SiLU, conv 3×3
 * ResBlock (GroupNorm32: eps 1e-5, diffusers resnet_eps 1e-5):
 *   h = conv(silu(gn(x))) + emb_layers(silu(emb))[:, :, None, None];
 *   h = conv(silu(gn(h)));  return skip_connection(x) + h   (1×1 conv when channels change)
 * SpatialTransformer (LDM attention.py; diffusers Transformer2DModel): GroupNorm eps 1e-6,
 *   proj_in (1×1 conv in SD 1.x, Linear in SD 2.x: the same product on the token layout),
 *   BasicTransformerBlock × depth: x += attn1(ln1(x)); x += attn2(ln2(x), context);
 *   x += ff(ln3(x)) with LayerNorm eps 1e-5, to_q/to_k/to_v without bias, to_out.0 with bias,
 *   ff = GEGLU(ff.net.0.proj) then ff.net.2; then proj_out and the residual.
 *
 * Memory: activations come from the arena. Each block runs in a scope whose scratch is
 * released when it ends, keeping only its output (moved down to the scope start); skip
 * connections stay until the end of the call.
 */
#include "sdgen/unet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sdgen/ops.h"
#include "sdgen/safetensors.h"

typedef struct unet_ctx {
    sd_model *m;
    sd_arena *a;
    sd_err *err;
    const sd_unet_config *c;
    sd_tensor emb_silu; /* silu(time embedding) [n, temb]: every ResBlock's emb_layers input */
    sd_tensor context;  /* [n, L, context_dim] */
} unet_ctx;

/* ---- weights ---- */

/* F16 weights in memory (SD_WEIGHTS_F16): sd_model_weight converts each tensor at its use into
 * the arena, inside the scope of the block that uses it, so it ends with the block. Converting
 * into a ring of its own (3x the largest tensor, 455 MB for SD 1.5) instead wrote 3.4 GB per step
 * to memory not touched for a while and evicted the activations: at 256x256 on one thread every
 * op ran 20-45% slower than with F32 weights. In the arena the blocks reuse the same addresses,
 * which stay in cache for all but the largest blocks (docs/PERFORMANCE.md). */
static int weight(unet_ctx *u, sd_tensor *w, const char *pre, const char *suffix)
{
    /* timed: with F16 weights in memory this is where each tensor is converted (bench --profile) */
    const sd_op_timer pt = sd_op_begin();
    char name[1200];
    snprintf(name, sizeof name, SD_PREFIX_UNET "%s.%s", pre, suffix);
    int rc = sd_model_weight(u->m, u->a, name, w, u->err);
    sd_op_end(SD_OP_WEIGHTS, pt, 0);
    return rc;
}

static int has_weight(unet_ctx *u, const char *pre, const char *suffix)
{
    char name[1200];
    snprintf(name, sizeof name, SD_PREFIX_UNET "%s.%s", pre, suffix);
    return sd_model_find(u->m, name) != NULL;
}

/* A weight of a layer applied as Linear: [out, in] or a 1×1 conv [out, in, 1, 1] viewed so. */
static int linear_weight(unet_ctx *u, sd_tensor *w, const char *pre, const char *suffix)
{
    if (weight(u, w, pre, suffix)) return -1;
    if (w->ndim == 4 && w->ne[2] == 1 && w->ne[3] == 1) {
        int64_t s[2] = {w->ne[0], w->ne[1]};
        *w = sd_tensor_reshape(*w, 2, s);
    }
    if (w->ndim != 2)
        return sd_errf(u->err, "U-Net weight %s%s.%s: expected a [out, in] matrix", SD_PREFIX_UNET, pre, suffix);
    return 0;
}

static int expect_shape(unet_ctx *u, const sd_tensor *w, const char *pre, const char *suffix, int ndim,
                        int64_t d0, int64_t d1)
{
    /* d0/d1 < 0: not checked */
    if (w->ndim != ndim || (d0 >= 0 && w->ne[0] != d0) || (ndim > 1 && d1 >= 0 && w->ne[1] != d1)) {
        char b[64];
        return sd_errf(u->err, "U-Net weight %s%s.%s has shape %s, expected %d dims [%lld, %lld, ...]",
                       SD_PREFIX_UNET, pre, suffix, sd_shape_str(*w, b, sizeof b), ndim, (long long)d0,
                       (long long)d1);
    }
    return 0;
}

/* ---- blocks ---- */

static int resblock(unet_ctx *u, const char *pre, sd_tensor x, sd_tensor *out)
{
    const int G = u->c->groups;
    const int64_t cin = x.ne[1];
    sd_tensor g1, b1, w1, c1, ew, eb, g2, b2, w2, c2, sw, sb;
    sd_arena *a = u->a;
    sd_scope s = sd_scope_open(a); /* weights (F16: converted into the arena) and scratch */
    if (weight(u, &g1, pre, "in_layers.0.weight") || weight(u, &b1, pre, "in_layers.0.bias") ||
        weight(u, &w1, pre, "in_layers.2.weight") || weight(u, &c1, pre, "in_layers.2.bias") ||
        linear_weight(u, &ew, pre, "emb_layers.1.weight") || weight(u, &eb, pre, "emb_layers.1.bias") ||
        weight(u, &g2, pre, "out_layers.0.weight") || weight(u, &b2, pre, "out_layers.0.bias") ||
        weight(u, &w2, pre, "out_layers.3.weight") || weight(u, &c2, pre, "out_layers.3.bias"))
        return -1;
    const int64_t cout = w1.ne[0];
    if (expect_shape(u, &w1, pre, "in_layers.2.weight", 4, cout, cin) ||
        expect_shape(u, &ew, pre, "emb_layers.1.weight", 2, cout, u->emb_silu.ne[1]) ||
        expect_shape(u, &w2, pre, "out_layers.3.weight", 4, cout, cout))
        return -1;
    if (sd_numel(g1) != cin || sd_numel(b1) != cin || cin % G || sd_numel(g2) != cout ||
        sd_numel(b2) != cout || cout % G || sd_numel(c1) != cout || sd_numel(c2) != cout ||
        sd_numel(eb) != cout)
        return sd_errf(u->err, "U-Net %s%s: inconsistent ResBlock shapes", SD_PREFIX_UNET, pre);
    const int skip = has_weight(u, pre, "skip_connection.weight");
    if (skip) {
        if (weight(u, &sw, pre, "skip_connection.weight") || weight(u, &sb, pre, "skip_connection.bias") ||
            expect_shape(u, &sw, pre, "skip_connection.weight", 4, cout, cin))
            return -1;
    } else if (cin != cout) {
        return sd_errf(u->err, "U-Net %s%s: %lld -> %lld channels without skip_connection", SD_PREFIX_UNET,
                       pre, (long long)cin, (long long)cout);
    }
    sd_tensor h = sd_groupnorm_silu(a, x, G, &g1, &b1, 1e-5f);
    h = sd_conv2d(a, h, &w1, &c1, 1, 1);
    sd_tensor e = sd_linear(a, u->emb_silu, &ew, &eb);
    sd_add_channel_bias_(h, e);
    h = sd_groupnorm_silu(a, h, G, &g2, &b2, 1e-5f);
    h = sd_conv2d(a, h, &w2, &c2, 1, 1);
    if (skip) {
        sd_tensor sk = sd_conv2d(a, x, &sw, &sb, 1, 0);
        sd_add_(h, sk);
    } else {
        sd_add_(h, x);
    }
    *out = sd_scope_keep(a, s, h);
    return 0;
}

/* Multi-head attention block: x [n, T, C] += to_out(attention(to_q(xn), to_k(kv), to_v(kv))). */
static int attention_block(unet_ctx *u, const char *pre, const char *attn, sd_tensor x, sd_tensor xn,
                           sd_tensor kv, int heads)
{
    char p[512];
    snprintf(p, sizeof p, "%s.%s", pre, attn);
    sd_tensor wq, wk, wv, wo, bo;
    sd_arena *a = u->a;
    sd_scope s = sd_scope_open(a);
    if (linear_weight(u, &wq, p, "to_q.weight") || linear_weight(u, &wk, p, "to_k.weight") ||
        linear_weight(u, &wv, p, "to_v.weight") || linear_weight(u, &wo, p, "to_out.0.weight") ||
        weight(u, &bo, p, "to_out.0.bias"))
        return -1;
    const int64_t C = x.ne[2], inner = wq.ne[0];
    if (wq.ne[1] != C || wk.ne[1] != kv.ne[2] || wv.ne[1] != kv.ne[2] || wk.ne[0] != inner ||
        wv.ne[0] != inner || wo.ne[0] != C || wo.ne[1] != inner || sd_numel(bo) != C || heads < 1 ||
        inner % heads)
        return sd_errf(u->err, "U-Net %s%s: inconsistent attention shapes (channels %lld, context %lld, heads %d)",
                       SD_PREFIX_UNET, p, (long long)C, (long long)kv.ne[2], heads);
    sd_tensor q = sd_linear(a, xn, &wq, NULL);
    sd_tensor k = sd_linear(a, kv, &wk, NULL);
    sd_tensor v = sd_linear(a, kv, &wv, NULL);
    sd_tensor o = sd_attention(a, q, k, v, heads, 0);
    o = sd_linear(a, o, &wo, &bo);
    sd_add_(x, o);
    sd_scope_close(a, s);
    return 0;
}

static int norm_weights(unet_ctx *u, const char *pre, const char *name, int64_t C, sd_tensor *g, sd_tensor *b)
{
    char s1[128], s2[128];
    snprintf(s1, sizeof s1, "%s.weight", name);
    snprintf(s2, sizeof s2, "%s.bias", name);
    if (weight(u, g, pre, s1) || weight(u, b, pre, s2)) return -1;
    if (sd_numel(*g) != C || sd_numel(*b) != C)
        return sd_errf(u->err, "U-Net %s%s.%s: expected %lld channels", SD_PREFIX_UNET, pre, name, (long long)C);
    return 0;
}

/* BasicTransformerBlock on x [n, T, C], in place. */
static int transformer_block(unet_ctx *u, const char *pre, sd_tensor x, int heads)
{
    sd_arena *a = u->a;
    const int64_t C = x.ne[2];
    sd_tensor g1, b1, g2, b2, g3, b3, wp, bp, wf, bf;
    sd_scope outer = sd_scope_open(a); /* this block's weights */
    if (norm_weights(u, pre, "norm1", C, &g1, &b1) || norm_weights(u, pre, "norm2", C, &g2, &b2) ||
        norm_weights(u, pre, "norm3", C, &g3, &b3) || linear_weight(u, &wp, pre, "ff.net.0.proj.weight") ||
        weight(u, &bp, pre, "ff.net.0.proj.bias") || linear_weight(u, &wf, pre, "ff.net.2.weight") ||
        weight(u, &bf, pre, "ff.net.2.bias"))
        return -1;
    if (wp.ne[1] != C || wp.ne[0] % 2 || sd_numel(bp) != wp.ne[0] || wf.ne[1] != wp.ne[0] / 2 ||
        wf.ne[0] != C || sd_numel(bf) != C)
        return sd_errf(u->err, "U-Net %s%s.ff: inconsistent feed-forward shapes", SD_PREFIX_UNET, pre);

    sd_scope s = sd_scope_open(a);
    sd_tensor xn = sd_layernorm(a, x, &g1, &b1, 1e-5f);
    if (attention_block(u, pre, "attn1", x, xn, xn, heads)) return -1;
    sd_scope_close(a, s);

    xn = sd_layernorm(a, x, &g2, &b2, 1e-5f);
    if (attention_block(u, pre, "attn2", x, xn, u->context, heads)) return -1;
    sd_scope_close(a, s);

    xn = sd_layernorm(a, x, &g3, &b3, 1e-5f);
    sd_tensor f = sd_linear(a, xn, &wp, &bp);
    f = sd_geglu(a, f);
    f = sd_linear(a, f, &wf, &bf);
    sd_add_(x, f);
    sd_scope_close(a, outer);
    return 0;
}

static int spatial_transformer(unet_ctx *u, const char *pre, sd_tensor x, sd_tensor *out)
{
    sd_arena *a = u->a;
    const int64_t C = x.ne[1], H = x.ne[2], W = x.ne[3];
    sd_tensor gn, bn, wi, bi, wo, bo;
    sd_scope s = sd_scope_open(a);
    if (norm_weights(u, pre, "norm", C, &gn, &bn) || linear_weight(u, &wi, pre, "proj_in.weight") ||
        weight(u, &bi, pre, "proj_in.bias") || linear_weight(u, &wo, pre, "proj_out.weight") ||
        weight(u, &bo, pre, "proj_out.bias"))
        return -1;
    const int64_t inner = wi.ne[0];
    if (wi.ne[1] != C || sd_numel(bi) != inner || wo.ne[0] != C || wo.ne[1] != inner || sd_numel(bo) != C ||
        C % u->c->groups)
        return sd_errf(u->err, "U-Net %s%s: inconsistent proj_in/proj_out shapes", SD_PREFIX_UNET, pre);
    const int heads = sd_unet_heads(u->c, (int)inner);
    if (heads < 1 || inner % heads)
        return sd_errf(u->err, "U-Net %s%s: %lld channels do not split into heads", SD_PREFIX_UNET, pre,
                       (long long)inner);

    /* proj_in as a 1×1 conv on NCHW followed by the token transpose (SD 1.x) equals the
     * transpose followed by a Linear (SD 2.x use_linear_in_transformer); do the latter. */
    sd_tensor h = sd_groupnorm(a, x, u->c->groups, &gn, &bn, 1e-6f);
    sd_tensor t = sd_nchw_to_nlc(a, h);
    t = sd_linear(a, t, &wi, &bi);
    for (int d = 0;; d++) {
        char bp[512];
        snprintf(bp, sizeof bp, "%s.transformer_blocks.%d", pre, d);
        if (!has_weight(u, bp, "norm1.weight")) {
            if (d == 0)
                return sd_errf(u->err, "U-Net %s%s: no transformer_blocks", SD_PREFIX_UNET, pre);
            break;
        }
        if (d >= 64) return sd_errf(u->err, "U-Net %s%s: too many transformer blocks", SD_PREFIX_UNET, pre);
        if (transformer_block(u, bp, t, heads)) return -1;
    }
    t = sd_linear(a, t, &wo, &bo);
    sd_tensor y = sd_nlc_to_nchw(a, t, H, W);
    sd_add_(y, x);
    *out = sd_scope_keep(a, s, y);
    return 0;
}

/* Nearest-neighbour resize of NCHW to (oh, ow) with PyTorch's index rule
 * (F.interpolate mode "nearest": src = min(floor(dst · (float)in/out), in − 1)). */
static sd_tensor upsample_nearest(sd_arena *a, sd_tensor x, int64_t oh, int64_t ow)
{
    if (oh == 2 * x.ne[2] && ow == 2 * x.ne[3]) return sd_upsample2x(a, x);
    const int64_t nc = x.ne[0] * x.ne[1], h = x.ne[2], w = x.ne[3];
    sd_tensor y = sd_tensor_4d(a, x.ne[0], x.ne[1], oh, ow);
    const float sh = (float)h / (float)oh, sw = (float)w / (float)ow;
    for (int64_t p = 0; p < nc; p++)
        for (int64_t r = 0; r < oh; r++) {
            int64_t sr = (int64_t)floorf((float)r * sh);
            if (sr > h - 1) sr = h - 1;
            const float *src = x.data + (p * h + sr) * w;
            float *dst = y.data + (p * oh + r) * ow;
            for (int64_t c = 0; c < ow; c++) {
                int64_t sc = (int64_t)floorf((float)c * sw);
                if (sc > w - 1) sc = w - 1;
                dst[c] = src[sc];
            }
        }
    return y;
}

static int conv_layer(unet_ctx *u, const char *pre, const char *name, sd_tensor x, int stride,
                      sd_tensor *out)
{
    char s1[128], s2[128];
    snprintf(s1, sizeof s1, "%s.weight", name);
    snprintf(s2, sizeof s2, "%s.bias", name);
    sd_tensor w, b;
    sd_scope s = sd_scope_open(u->a);
    if (weight(u, &w, pre, s1) || weight(u, &b, pre, s2) || expect_shape(u, &w, pre, s1, 4, -1, x.ne[1]))
        return -1;
    if (w.ne[2] != 3 || w.ne[3] != 3 || sd_numel(b) != w.ne[0])
        return sd_errf(u->err, "U-Net %s%s.%s: expected a 3×3 convolution", SD_PREFIX_UNET, pre, name);
    *out = sd_scope_keep(u->a, s, sd_conv2d(u->a, x, &w, &b, stride, 1));
    return 0;
}

/* ---- the network ---- */

#define MAX_SKIPS (SD_MAX_LEVELS * 9 + 2)

static size_t estimate_bytes(const sd_unet_config *c, int64_t n, int64_t h, int64_t w, int64_t L)
{
    size_t skips = 0, amax = 0;
    int64_t hh = h, ww = w;
    skips += (size_t)(n * c->model_channels * hh * ww);
    for (int l = 0; l < c->n_levels; l++) {
        const size_t al = (size_t)(n * c->model_channels * c->channel_mult[l] * hh * ww);
        skips += (size_t)c->num_res_blocks * al;
        if (al > amax) amax = al;
        if (l + 1 < c->n_levels) {
            hh = (hh + 1) / 2;
            ww = (ww + 1) / 2;
            skips += (size_t)(n * c->model_channels * c->channel_mult[l] * hh * ww);
        }
    }
    const size_t kv = (size_t)(2 * n * L * c->model_channels * 4);
    return (skips + 24 * amax + kv) * sizeof(float) + ((size_t)48 << 20);
}

static int unet_run(unet_ctx *u, sd_tensor x, const float *t, sd_tensor *out)
{
    const sd_unet_config *c = u->c;
    sd_arena *a = u->a;
    const int64_t n = x.ne[0];
    char pre[64];

    /* time embedding: sinusoid(t) -> Linear -> SiLU -> Linear; ResBlocks use silu(emb) */
    sd_tensor w0, b0, w2, b2;
    sd_scope s = sd_scope_open(a);
    if (linear_weight(u, &w0, "time_embed", "0.weight") || weight(u, &b0, "time_embed", "0.bias") ||
        linear_weight(u, &w2, "time_embed", "2.weight") || weight(u, &b2, "time_embed", "2.bias"))
        return -1;
    if (w0.ne[1] != c->model_channels || w2.ne[1] != w0.ne[0] || sd_numel(b0) != w0.ne[0] ||
        sd_numel(b2) != w2.ne[0])
        return sd_errf(u->err, "U-Net time_embed: inconsistent shapes");
    sd_tensor e = sd_timestep_embedding(a, t, (int)n, c->model_channels);
    e = sd_linear(a, e, &w0, &b0);
    sd_silu_(e);
    e = sd_linear(a, e, &w2, &b2);
    sd_silu_(e);
    u->emb_silu = sd_scope_keep(a, s, e);

    sd_tensor skips[MAX_SKIPS];
    int nskip = 0;
    sd_tensor h;
    if (conv_layer(u, "input_blocks.0", "0", x, 1, &h)) return -1;
    skips[nskip++] = h;

    int k = 1;
    for (int l = 0; l < c->n_levels; l++) {
        for (int r = 0; r < c->num_res_blocks; r++, k++) {
            snprintf(pre, sizeof pre, "input_blocks.%d.0", k);
            if (resblock(u, pre, h, &h)) return -1;
            if (c->attn[l]) {
                snprintf(pre, sizeof pre, "input_blocks.%d.1", k);
                if (spatial_transformer(u, pre, h, &h)) return -1;
            }
            skips[nskip++] = h;
        }
        if (l + 1 < c->n_levels) {
            snprintf(pre, sizeof pre, "input_blocks.%d.0", k++);
            if (conv_layer(u, pre, "op", h, 2, &h)) return -1;
            skips[nskip++] = h;
        }
    }

    /* From here on, h is not a skip connection: each block may overwrite its input. */
    sd_scope hs = sd_scope_open(a);
    sd_tensor y;
    if (resblock(u, "middle_block.0", h, &y)) return -1;
    h = sd_scope_keep(a, hs, y);
    if (c->mid_attn) {
        if (spatial_transformer(u, "middle_block.1", h, &y)) return -1;
        h = sd_scope_keep(a, hs, y);
        if (resblock(u, "middle_block.2", h, &y)) return -1;
        h = sd_scope_keep(a, hs, y);
    } else if (has_weight(u, "middle_block.1", "in_layers.0.weight")) {
        if (resblock(u, "middle_block.1", h, &y)) return -1;
        h = sd_scope_keep(a, hs, y);
    }

    k = 0;
    for (int l = c->n_levels - 1; l >= 0; l--) {
        for (int r = 0; r <= c->num_res_blocks; r++, k++) {
            if (nskip == 0) return sd_errf(u->err, "U-Net: skip connections exhausted");
            sd_tensor sk = skips[--nskip];
            if (sk.ne[2] != h.ne[2] || sk.ne[3] != h.ne[3])
                return sd_errf(u->err, "U-Net output_blocks.%d: size %lldx%lld does not match skip %lldx%lld", k,
                               (long long)h.ne[2], (long long)h.ne[3], (long long)sk.ne[2], (long long)sk.ne[3]);
            y = sd_concat1(a, h, sk);
            snprintf(pre, sizeof pre, "output_blocks.%d.0", k);
            if (resblock(u, pre, y, &y)) return -1;
            int idx = 1;
            if (c->attn[l]) {
                snprintf(pre, sizeof pre, "output_blocks.%d.1", k);
                if (spatial_transformer(u, pre, y, &y)) return -1;
                idx = 2;
            }
            if (l > 0 && r == c->num_res_blocks) {
                /* diffusers passes the next skip's size as upsample_size when the latent is not a
                 * multiple of 2^(levels-1); for even sizes this is plain ×2 nearest. */
                if (nskip == 0) return sd_errf(u->err, "U-Net: skip connections exhausted");
                const sd_tensor nx = skips[nskip - 1];
                sd_tensor up = upsample_nearest(a, y, nx.ne[2], nx.ne[3]);
                snprintf(pre, sizeof pre, "output_blocks.%d.%d", k, idx);
                if (conv_layer(u, pre, "conv", up, 1, &y)) return -1;
            }
            h = sd_scope_keep(a, hs, y);
        }
    }
    if (nskip != 0) return sd_errf(u->err, "U-Net: %d skip connections left over", nskip);

    sd_tensor go, bo;
    if (norm_weights(u, "out", "0", h.ne[1], &go, &bo)) return -1;
    if (h.ne[1] % c->groups) return sd_errf(u->err, "U-Net out.0: channels not divisible by groups");
    h = sd_groupnorm_silu(a, h, c->groups, &go, &bo, 1e-5f);
    if (conv_layer(u, "out", "2", h, 1, &h)) return -1;
    *out = sd_scope_keep(a, hs, h);
    return 0;
}

int sd_unet_forward(sd_model *m, sd_arena *a, sd_tensor x, const float *t, sd_tensor context,
                    sd_tensor *out, sd_err *err)
{
    const sd_unet_config *c = &m->unet;
    char b1[64], b2[64];
    if (err) err->msg[0] = 0;
    if (!m->has_unet) return sd_errf(err, "%s: the model has no U-Net", m->path ? m->path : "model");
    if (c->n_levels < 1 || c->n_levels > SD_MAX_LEVELS || c->num_res_blocks < 1 || c->num_res_blocks > 8 ||
        c->model_channels < 1 || c->groups < 1 || c->in_channels < 1)
        return sd_errf(err, "U-Net: unsupported configuration (%d levels, %d res blocks, %d channels)",
                       c->n_levels, c->num_res_blocks, c->model_channels);
    if (x.ndim != 4 || x.ne[0] < 1 || x.ne[0] > 64 || x.ne[1] != c->in_channels || x.ne[2] < 1 ||
        x.ne[3] < 1 || x.ne[2] > SD_UNET_MAX_SIDE || x.ne[3] > SD_UNET_MAX_SIDE)
        return sd_errf(err, "U-Net: latent shape %s, expected [n, %d, h, w] with 1 <= h, w <= %d",
                       sd_shape_str(x, b1, sizeof b1), c->in_channels, SD_UNET_MAX_SIDE);
    if (context.ndim != 3 || context.ne[0] != x.ne[0] || context.ne[1] < 1 || context.ne[1] > 77 * 64 ||
        (c->context_dim > 0 && context.ne[2] != c->context_dim))
        return sd_errf(err, "U-Net: context shape %s for latent %s, expected [%lld, L, %d]",
                       sd_shape_str(context, b1, sizeof b1), sd_shape_str(x, b2, sizeof b2),
                       (long long)x.ne[0], c->context_dim);
    for (int64_t i = 0; i < x.ne[0]; i++)
        if (!isfinite(t[i])) return sd_errf(err, "U-Net: timestep %lld is not finite", (long long)i);

    unet_ctx u = {.m = m, .a = a, .err = err, .c = c, .context = context};
    /* Weights converted per use live in the block scopes: reserve room for the largest block's
     * (about twice the largest tensor: an output ResBlock's two convolutions and skip) */
    const size_t wbytes = 2 * (size_t)sd_model_scoped_numel(m, SD_PREFIX_UNET) * sizeof(float);
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        return sd_errcf(err, SD_EXIT_OOM, "U-Net: out of memory for activations (latent %s)",
                        sd_shape_str(x, b1, sizeof b1));
    }
    a->guard = &jb;
    sd_arena_reserve(a, estimate_bytes(c, x.ne[0], x.ne[2], x.ne[3], context.ne[1]) + wbytes);
    int rc = unet_run(&u, x, t, out);
    a->guard = prev;
    if (rc && err && !err->msg[0]) sd_errf(err, "U-Net: failed");
    return rc;
}
