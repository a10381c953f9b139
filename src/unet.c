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
#include <stdlib.h>
#include <string.h>

#include "sdgen/lowrank.h"
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

/* F16 weights in memory (SD_WEIGHTS_F16): the matrices and kernels stay F16 (sd_model_weight_f16) and the
 * products convert them a block at a time in cache (ops.c, "products with a weight operand"); where a
 * product needs a whole tensor converted (Winograd, the many-pixels convolutions) it converts it into
 * the arena for that call. The vectors (biases, norms) are converted by sd_model_weight into the arena,
 * inside the scope of the block that uses them, so they end with the block. Converting
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
    int rc = sd_model_weight_f16(u->m, u->a, name, w, u->err);
    sd_op_end(SD_OP_WEIGHTS, pt, 0);
    return rc;
}

/* The LoRA modules added on the fly to the layer of weight "<pre>.<suffix>" (sdgen/lowrank.h), or NULL. */
static const sd_lowrank *lowrank(unet_ctx *u, const char *pre, const char *suffix)
{
    char name[1200];
    snprintf(name, sizeof name, SD_PREFIX_UNET "%s.%s", pre, suffix);
    return sd_model_lowrank(u->m, name);
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
    /* d0/d1 < 0: not checked; later dims not checked */
    char name[1200];
    snprintf(name, sizeof name, SD_PREFIX_UNET "%s.%s", pre, suffix);
    const int64_t shape[4] = {d0, d1, -1, -1};
    return sd_tensor_expect(w, name, ndim, shape, u->err);
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
    h = sd_conv2d_lr(a, h, &w1, &c1, 1, 1, lowrank(u, pre, "in_layers.2.weight"));
    sd_tensor e = sd_linear_lr(a, u->emb_silu, &ew, &eb, lowrank(u, pre, "emb_layers.1.weight"));
    sd_add_channel_bias_(h, e);
    h = sd_groupnorm_silu(a, h, G, &g2, &b2, 1e-5f);
    h = sd_conv2d_lr(a, h, &w2, &c2, 1, 1, lowrank(u, pre, "out_layers.3.weight"));
    if (skip) {
        sd_tensor sk = sd_conv2d_lr(a, x, &sw, &sb, 1, 0, lowrank(u, pre, "skip_connection.weight"));
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
    sd_tensor q = sd_linear_lr(a, xn, &wq, NULL, lowrank(u, p, "to_q.weight"));
    sd_tensor k = sd_linear_lr(a, kv, &wk, NULL, lowrank(u, p, "to_k.weight"));
    sd_tensor v = sd_linear_lr(a, kv, &wv, NULL, lowrank(u, p, "to_v.weight"));
    sd_tensor o = sd_attention(a, q, k, v, heads, 0);
    o = sd_linear_lr(a, o, &wo, &bo, lowrank(u, p, "to_out.0.weight"));
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
    sd_tensor f = sd_linear_lr(a, xn, &wp, &bp, lowrank(u, pre, "ff.net.0.proj.weight"));
    f = sd_geglu(a, f);
    f = sd_linear_lr(a, f, &wf, &bf, lowrank(u, pre, "ff.net.2.weight"));
    sd_add_(x, f);
    sd_scope_close(a, outer);
    return 0;
}

static int spatial_transformer(unet_ctx *u, const char *pre, int depth, sd_tensor x, sd_tensor *out)
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
    t = sd_linear_lr(a, t, &wi, &bi, lowrank(u, pre, "proj_in.weight"));
    for (int d = 0; d < depth; d++) {
        char bp[512];
        snprintf(bp, sizeof bp, "%s.transformer_blocks.%d", pre, d);
        if (transformer_block(u, bp, t, heads)) return -1;
    }
    t = sd_linear_lr(a, t, &wo, &bo, lowrank(u, pre, "proj_out.weight"));
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

/* 3×3 convolution "<pre>.weight" / "<pre>.bias" with padding 1. */
static int conv_layer(unet_ctx *u, const char *pre, sd_tensor x, int stride, sd_tensor *out)
{
    sd_tensor w, b;
    sd_scope s = sd_scope_open(u->a);
    if (weight(u, &w, pre, "weight") || weight(u, &b, pre, "bias") || expect_shape(u, &w, pre, "weight", 4, -1, x.ne[1]))
        return -1;
    if (w.ne[2] != 3 || w.ne[3] != 3 || sd_numel(b) != w.ne[0])
        return sd_errf(u->err, "U-Net %s%s: expected a 3×3 convolution", SD_PREFIX_UNET, pre);
    *out = sd_scope_keep(u->a, s, sd_conv2d_lr(u->a, x, &w, &b, stride, 1, lowrank(u, pre, "weight")));
    return 0;
}

/* ---- the topology ----
 * One walk over the architecture (unet_plan) lists the blocks in the order they run, with their
 * weight names, channels and sizes. The forward pass, the tensor check at load, the FLOP count
 * and the memory bound all read that list, so they cannot disagree about the network. */

/* Most skip connections held at once: conv_in + (res blocks + downsample) per level. */
#define MAX_SKIPS (SD_MAX_LEVELS * 17 + 2)

typedef enum ub_kind { UB_CONV_IN, UB_RES, UB_ATTN, UB_DOWN, UB_UP, UB_OUT } ub_kind;

typedef struct ublock {
    ub_kind kind;
    char pre[40];      /* LDM name under SD_PREFIX_UNET: "input_blocks.4.1", "output_blocks.2.2.conv", "out" */
    int level;         /* resolution level (0 = full latent size) */
    int64_t cin, cout; /* channels in (a concatenated skip included) and out */
    int64_t skip;      /* channels of the skip connection concatenated before the block (0: none) */
    int push;          /* the block's output is kept as a skip connection */
    int keep;          /* decoder half: compact the arena after this block (the end of an LDM block) */
    int decoder;       /* middle or output half: the input is not needed after the block */
    int depth;         /* UB_ATTN: transformer blocks */
    int64_t h, w;      /* input size */
    int64_t oh, ow;    /* output size (UB_DOWN: ceil half, UB_UP: the next skip's size) */
} ublock;

typedef struct uplan {
    ublock *b;
    int n, cap;
} uplan;

/* Transformer blocks in a SpatialTransformer of level l (the middle block: l = n_levels). */
static int unet_level_depth(const sd_unet_config *c, int l)
{
    return c->depth[l] > 0 ? c->depth[l] : c->transformer_depth;
}

static ublock *plan_add(uplan *p, ub_kind kind, int level, int64_t cin, int64_t cout, int64_t h, int64_t w,
                        const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static ublock *plan_add(uplan *p, ub_kind kind, int level, int64_t cin, int64_t cout, int64_t h, int64_t w,
                        const char *fmt, ...)
{
    if (p->n == p->cap) return NULL;
    ublock *b = &p->b[p->n++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->level = level;
    b->cin = cin;
    b->cout = cout;
    b->h = b->oh = h;
    b->w = b->ow = w;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->pre, sizeof b->pre, fmt, ap);
    va_end(ap);
    return b;
}

/* The blocks of LDM UNetModel for config c on an h×w latent (see the header comment for the names).
 * Returns 0, or -1 when the config is out of range. The caller frees p->b. */
static int unet_plan(const sd_unet_config *c, int64_t h, int64_t w, uplan *p)
{
    memset(p, 0, sizeof *p);
    const int L = c->n_levels, R = c->num_res_blocks;
    if (L < 1 || L > SD_MAX_LEVELS || R < 1 || R > 16 || c->model_channels < 1 || h < 1 || w < 1) return -1;
    p->cap = 1 + L * (2 * R + 1) + 3 + L * (2 * (R + 1) + 1) + 1;
    p->b = malloc((size_t)p->cap * sizeof *p->b);
    if (!p->b) return -1;
    struct { int64_t ch, h, w; } skips[MAX_SKIPS];
    int ns = 0, k = 1;
    const int64_t mc = c->model_channels;
    ublock *b = plan_add(p, UB_CONV_IN, 0, c->in_channels, mc, h, w, "input_blocks.0.0");
    b->push = 1;
    skips[ns].ch = mc, skips[ns].h = h, skips[ns++].w = w;
    int64_t ch = mc;
    for (int l = 0; l < L; l++) {
        const int64_t co = mc * c->channel_mult[l];
        for (int r = 0; r < R; r++, k++) {
            b = plan_add(p, UB_RES, l, ch, co, h, w, "input_blocks.%d.0", k);
            ch = co;
            if (c->attn[l]) {
                b = plan_add(p, UB_ATTN, l, ch, ch, h, w, "input_blocks.%d.1", k);
                b->depth = unet_level_depth(c, l);
            }
            b->push = 1;
            skips[ns].ch = ch, skips[ns].h = h, skips[ns++].w = w;
        }
        if (l + 1 < L) {
            b = plan_add(p, UB_DOWN, l, ch, ch, h, w, "input_blocks.%d.0.op", k++);
            h = (h + 1) / 2; /* 3×3 conv, stride 2, padding 1: ceil(size / 2) */
            w = (w + 1) / 2;
            b->oh = h, b->ow = w, b->push = 1;
            skips[ns].ch = ch, skips[ns].h = h, skips[ns++].w = w;
        }
    }
    b = plan_add(p, UB_RES, L, ch, ch, h, w, "middle_block.0");
    b->decoder = b->keep = 1;
    if (c->mid_attn) {
        b = plan_add(p, UB_ATTN, L, ch, ch, h, w, "middle_block.1");
        b->decoder = b->keep = 1, b->depth = unet_level_depth(c, L);
    }
    b = plan_add(p, UB_RES, L, ch, ch, h, w, "middle_block.%d", c->mid_attn ? 2 : 1);
    b->decoder = b->keep = 1;
    k = 0;
    for (int l = L - 1; l >= 0; l--) {
        const int64_t co = mc * c->channel_mult[l];
        for (int r = 0; r <= R; r++, k++) {
            if (ns == 0) return -1;
            const int64_t sk = skips[--ns].ch;
            h = skips[ns].h, w = skips[ns].w;
            b = plan_add(p, UB_RES, l, ch + sk, co, h, w, "output_blocks.%d.0", k);
            b->skip = sk, b->decoder = 1;
            ch = co;
            int idx = 1;
            if (c->attn[l]) {
                b = plan_add(p, UB_ATTN, l, ch, ch, h, w, "output_blocks.%d.1", k);
                b->decoder = 1, b->depth = unet_level_depth(c, l);
                idx = 2;
            }
            if (l > 0 && r == R) {
                /* diffusers passes the next skip's size as upsample_size when the latent is not a
                 * multiple of 2^(levels-1); for even sizes this is plain ×2 nearest. */
                if (ns == 0) return -1;
                b = plan_add(p, UB_UP, l, ch, ch, h, w, "output_blocks.%d.%d.conv", k, idx);
                b->decoder = 1, b->oh = skips[ns - 1].h, b->ow = skips[ns - 1].w;
            }
            b->keep = 1;
        }
    }
    if (ns != 0) return -1;
    b = plan_add(p, UB_OUT, 0, ch, c->out_channels, h, w, "out");
    b->decoder = b->keep = 1;
    return b ? 0 : -1;
}

/* Arena bytes of one forward pass: every skip connection, ~24 maps of the widest level (a res
 * block's norm/conv/im2col band, a transformer's tokens, q/k/v and feed-forward), the context's
 * k/v projections, and slack for the attention and im2col kernels' per-thread blocks. */
static size_t plan_bytes(const uplan *p, const sd_unet_config *c, int64_t n, int64_t L)
{
    size_t skips = 0, amax = 0;
    for (int i = 0; i < p->n; i++) {
        const ublock *b = &p->b[i];
        if (b->push) skips += (size_t)(n * b->cout * b->oh * b->ow);
        if (b->kind == UB_RES && !b->decoder) {
            const size_t al = (size_t)(n * b->cout * b->h * b->w);
            if (al > amax) amax = al;
        }
    }
    const size_t kv = (size_t)(2 * n * L * c->model_channels * 4);
    return (skips + 24 * amax + kv) * sizeof(float) + ((size_t)48 << 20);
}

static double conv_flops(double cin, double cout, double k, double h, double w) { return 2 * cin * cout * k * k * h * w; }

/* Multiply-adds ×2 of one block per batch item; ted = time-embedding width, lctx = context tokens. */
static double block_flops(const sd_unet_config *c, const ublock *b, double ted, double lctx)
{
    const double h = (double)b->h, w = (double)b->w, ci = (double)b->cin, co = (double)b->cout;
    switch (b->kind) {
    case UB_CONV_IN: return conv_flops(ci, co, 3, h, w);
    case UB_DOWN: return conv_flops(ci, co, 3, (double)b->oh, (double)b->ow);
    case UB_UP: return conv_flops(ci, co, 3, (double)b->oh, (double)b->ow);
    case UB_OUT: return conv_flops(ci, co, 3, h, w);
    case UB_RES: {
        double f = conv_flops(ci, co, 3, h, w) + conv_flops(co, co, 3, h, w) + 2 * ted * co;
        if (ci != co) f += conv_flops(ci, co, 1, h, w);
        return f;
    }
    case UB_ATTN: {
        const double t = h * w, ch = co;
        double f = 2 * 2 * t * ch * ch; /* proj_in, proj_out */
        for (int d = 0; d < b->depth; d++) {
            f += 2 * t * ch * ch * 4 + 2 * 2 * t * t * ch;                                  /* self-attention */
            f += 2 * t * ch * ch * 2 + 2 * 2 * lctx * ch * c->context_dim + 2 * 2 * t * lctx * ch; /* cross */
            f += 2 * t * ch * 8 * ch + 2 * t * 4 * ch * ch;                                  /* GEGLU feed-forward */
        }
        return f;
    }
    }
    return 0;
}

double sd_unet_flops(const sd_unet_config *c, int64_t h, int64_t w, int64_t n_ctx)
{
    uplan p;
    if (unet_plan(c, h, w, &p)) {
        free(p.b);
        return 0;
    }
    const double ted = c->time_embed_dim, mc = c->model_channels;
    double f = 2 * mc * ted + 2 * ted * ted; /* time embedding */
    for (int i = 0; i < p.n; i++) f += block_flops(c, &p.b[i], ted, (double)n_ctx);
    free(p.b);
    return f;
}

size_t sd_unet_memory_bytes(const sd_model *m, int64_t n, int64_t h, int64_t w, int64_t n_ctx)
{
    uplan p;
    size_t bytes = 0;
    if (unet_plan(&m->unet, h, w, &p) == 0) bytes = plan_bytes(&p, &m->unet, n, n_ctx);
    free(p.b);
    /* Weights converted per use live in the block scopes: room for the largest block's (about
     * twice the largest tensor: an output ResBlock's two convolutions and skip). */
    return bytes ? bytes + 2 * (size_t)sd_model_scoped_numel(m, SD_PREFIX_UNET) * sizeof(float) : 0;
}

/* ---- the architecture, from the shapes of an LDM checkpoint ---- */

int sd_unet_derive(sd_model *m, sd_err *err)
{
    sd_unet_config *c = &m->unet;
    memset(c, 0, sizeof *c);
    const char *P = SD_PREFIX_UNET;
    int64_t mc = sd_model_dim(m, 0, "%sinput_blocks.0.0.weight", P);
    int64_t in = sd_model_dim(m, 1, "%sinput_blocks.0.0.weight", P);
    int64_t ted = sd_model_dim(m, 0, "%stime_embed.0.weight", P);
    int64_t out = sd_model_dim(m, 0, "%sout.2.weight", P);
    if (mc <= 0 || in <= 0 || ted <= 0 || out <= 0)
        return sd_errf(err, "%s: U-Net is missing input_blocks.0.0, time_embed.0 or out.2 weights", m->path);
    c->model_channels = (int)mc;
    c->in_channels = (int)in;
    c->out_channels = (int)out;
    c->time_embed_dim = (int)ted;
    c->groups = 32;
    int nrb = 0;
    while (nrb < 16 && sd_model_has(m, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + nrb)) nrb++;
    if (nrb == 0) return sd_errf(err, "%s: U-Net has no res block in input_blocks.1", m->path);
    c->num_res_blocks = nrb;
    int levels = 0;
    while (levels < SD_MAX_LEVELS && sd_model_has(m, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + levels * (nrb + 1))) {
        int64_t ch = sd_model_dim(m, 0, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + levels * (nrb + 1));
        if (ch % mc) return sd_errf(err, "%s: U-Net level %d width %lld is not a multiple of %lld", m->path, levels,
                                    (long long)ch, (long long)mc);
        c->channel_mult[levels] = (int)(ch / mc);
        c->attn[levels] = sd_model_has(m, "%sinput_blocks.%d.1.norm.weight", P, 1 + levels * (nrb + 1));
        levels++;
        if (!sd_model_has(m, "%sinput_blocks.%d.0.op.weight", P, levels * (nrb + 1))) break;
    }
    c->n_levels = levels;
    c->mid_attn = sd_model_has(m, "%smiddle_block.1.norm.weight", P);
    /* context width, projection kind and depth from the first transformer found */
    char tp[256] = "";
    for (int l = 0; l < levels && !tp[0]; l++)
        if (c->attn[l]) snprintf(tp, sizeof tp, "%sinput_blocks.%d.1.", P, 1 + l * (nrb + 1));
    if (!tp[0] && c->mid_attn) snprintf(tp, sizeof tp, "%smiddle_block.1.", P);
    if (tp[0]) {
        c->context_dim = (int)sd_model_dim(m, 1, "%stransformer_blocks.0.attn2.to_k.weight", tp);
        const sd_weight_ref *pi = NULL;
        char name[300];
        snprintf(name, sizeof name, "%sproj_in.weight", tp);
        pi = sd_model_find(m, name);
        c->linear_proj = pi && pi->ndim == 2;
        int depth = 0;
        while (depth < 64 && sd_model_has(m, "%stransformer_blocks.%d.norm1.weight", tp, depth)) depth++;
        c->transformer_depth = depth;
        if (c->context_dim <= 0 || depth == 0)
            return sd_errf(err, "%s: U-Net transformer block %s is incomplete", m->path, tp);
    }
    /* Depth per level (SDXL varies it: 2 at level 1, 10 at level 2 and in the middle), counted in
     * each level's first SpatialTransformer. */
    for (int l = 0; l <= levels; l++) {
        if (l < levels ? !c->attn[l] : !c->mid_attn) continue;
        char lp[256];
        if (l < levels) snprintf(lp, sizeof lp, "%sinput_blocks.%d.1.", P, 1 + l * (nrb + 1));
        else snprintf(lp, sizeof lp, "%smiddle_block.1.", P);
        int d = 0;
        while (d < 64 && sd_model_has(m, "%stransformer_blocks.%d.norm1.weight", lp, d)) d++;
        c->depth[l] = d;
    }
    /* SGM's label_emb (diffusers add_embedding): the extra conditioning vector's width */
    if (sd_model_has(m, "%slabel_emb.0.0.weight", P)) c->adm_in = (int)sd_model_dim(m, 1, "%slabel_emb.0.0.weight", P);
    m->has_unet = 1;
    return 0;
}

/* ---- the tensors the plan reads, checked by name and shape at load ---- */

static void check_res(sd_check *k, const char *pre, int64_t cin, int64_t cout, int64_t ted)
{
    char p[160];
    snprintf(p, sizeof p, "%sin_layers.0.", pre);
    sd_check_norm(k, p, cin);
    snprintf(p, sizeof p, "%sin_layers.2.", pre);
    sd_check_conv(k, p, cout, cin, 3);
    snprintf(p, sizeof p, "%semb_layers.1.", pre);
    sd_check_linear(k, p, cout, ted, 1);
    snprintf(p, sizeof p, "%sout_layers.0.", pre);
    sd_check_norm(k, p, cout);
    snprintf(p, sizeof p, "%sout_layers.3.", pre);
    sd_check_conv(k, p, cout, cout, 3);
    if (cin != cout) {
        snprintf(p, sizeof p, "%sskip_connection.", pre);
        sd_check_conv(k, p, cout, cin, 1);
    }
}

static void check_transformer(sd_check *k, const sd_unet_config *u, const char *pre, int64_t c, int depth)
{
    char p[200], b[160];
    snprintf(p, sizeof p, "%snorm.", pre);
    sd_check_norm(k, p, c);
    for (int io = 0; io < 2; io++) {
        snprintf(p, sizeof p, "%s%s.", pre, io ? "proj_out" : "proj_in");
        if (u->linear_proj) sd_check_linear(k, p, c, c, 1);
        else sd_check_conv(k, p, c, c, 1);
    }
    for (int d = 0; d < depth; d++) {
        snprintf(b, sizeof b, "%stransformer_blocks.%d.", pre, d);
        for (int a = 1; a <= 2; a++) {
            const int64_t kv = a == 1 ? c : u->context_dim;
            static const char *const proj[3] = {"to_q", "to_k", "to_v"};
            for (int j = 0; j < 3; j++) {
                snprintf(p, sizeof p, "%sattn%d.%s.", b, a, proj[j]);
                sd_check_linear(k, p, c, j ? kv : c, 0);
            }
            snprintf(p, sizeof p, "%sattn%d.to_out.0.", b, a);
            sd_check_linear(k, p, c, c, 1);
        }
        snprintf(p, sizeof p, "%sff.net.0.proj.", b);
        sd_check_linear(k, p, 8 * c, c, 1); /* GEGLU: 2 × 4c */
        snprintf(p, sizeof p, "%sff.net.2.", b);
        sd_check_linear(k, p, c, 4 * c, 1);
        for (int n = 1; n <= 3; n++) {
            snprintf(p, sizeof p, "%snorm%d.", b, n);
            sd_check_norm(k, p, c);
        }
    }
    if (u->num_heads <= 0 && (u->head_dim <= 0 || c % u->head_dim))
        sd_check_fail(k, "attention width %lld is not a multiple of the %d-wide heads", (long long)c, u->head_dim);
    else if (u->num_heads > 0 && c % u->num_heads)
        sd_check_fail(k, "attention width %lld does not split into %d heads", (long long)c, u->num_heads);
}

int sd_unet_check(const sd_model *m, sd_err *err)
{
    const sd_unet_config *u = &m->unet;
    sd_check k = {m, err, 0};
    const int64_t mc = u->model_channels, ted = u->time_embed_dim;
    if (mc % u->groups) {
        sd_check_fail(&k, "U-Net width %lld is not a multiple of %d GroupNorm groups", (long long)mc, u->groups);
        return -1;
    }
    uplan p;
    if (unet_plan(u, 64, 64, &p)) {
        free(p.b);
        return sd_errf(err, "%s: unsupported U-Net configuration (%d levels, %d res blocks)", m->path, u->n_levels,
                       u->num_res_blocks);
    }
    sd_check_linear(&k, SD_PREFIX_UNET "time_embed.0.", ted, mc, 1);
    sd_check_linear(&k, SD_PREFIX_UNET "time_embed.2.", ted, ted, 1);
    if (u->adm_in > 0) {
        sd_check_linear(&k, SD_PREFIX_UNET "label_emb.0.0.", ted, u->adm_in, 1);
        sd_check_linear(&k, SD_PREFIX_UNET "label_emb.0.2.", ted, ted, 1);
    }
    /* The U-Net predicts noise in the latent space: its output has the VAE's latent channels (or, without a
     * VAE, as many as its input). Taken from there rather than from out.2 itself, so that a wrong out.2 shape
     * is reported against the shape it should have. */
    const int64_t oc = m->has_vae && m->vae.z_channels > 0 ? m->vae.z_channels : u->in_channels;
    for (int i = 0; i < p.n && !k.failed; i++) {
        const ublock *b = &p.b[i];
        char pre[96];
        snprintf(pre, sizeof pre, SD_PREFIX_UNET "%s.", b->pre);
        switch (b->kind) {
        case UB_CONV_IN:
        case UB_DOWN:
        case UB_UP: sd_check_conv(&k, pre, b->cout, b->cin, 3); break;
        case UB_RES: check_res(&k, pre, b->cin, b->cout, ted); break;
        case UB_ATTN: check_transformer(&k, u, pre, b->cout, b->depth); break;
        case UB_OUT:
            sd_check_norm(&k, SD_PREFIX_UNET "out.0.", b->cin);
            sd_check_conv(&k, SD_PREFIX_UNET "out.2.", oc, b->cin, 3);
            break;
        }
    }
    free(p.b);
    return k.failed ? -1 : 0;
}

/* ---- the forward pass ---- */

/* Linear, SiLU, Linear under "<pre>.0" / "<pre>.2" (time_embed, label_emb.0) on x [n, in]. */
static int embed_mlp(unet_ctx *u, const char *pre, sd_tensor x, sd_tensor *out)
{
    sd_arena *a = u->a;
    sd_tensor w0, b0, w2, b2;
    if (linear_weight(u, &w0, pre, "0.weight") || weight(u, &b0, pre, "0.bias") ||
        linear_weight(u, &w2, pre, "2.weight") || weight(u, &b2, pre, "2.bias"))
        return -1;
    if (w0.ne[1] != x.ne[1] || w2.ne[1] != w0.ne[0] || sd_numel(b0) != w0.ne[0] || sd_numel(b2) != w2.ne[0])
        return sd_errf(u->err, "U-Net %s: inconsistent shapes", pre);
    sd_tensor e = sd_linear_lr(a, x, &w0, &b0, lowrank(u, pre, "0.weight"));
    sd_silu_(e);
    *out = sd_linear_lr(a, e, &w2, &b2, lowrank(u, pre, "2.weight"));
    return 0;
}

/* emb = time_embed(sinusoid(t)) (+ label_emb(y) when the model has one: SDXL's pooled text and
 * size conditioning); the ResBlocks use silu(emb). */
static int unet_time_embedding(unet_ctx *u, const float *t, int64_t n, sd_tensor y)
{
    const sd_unet_config *c = u->c;
    sd_arena *a = u->a;
    sd_scope s = sd_scope_open(a);
    sd_tensor e, ey;
    if (embed_mlp(u, "time_embed", sd_timestep_embedding(a, t, (int)n, c->model_channels), &e)) return -1;
    if (c->adm_in > 0) {
        if (!y.data || y.ndim != 2 || y.ne[0] != n || y.ne[1] != c->adm_in)
            return sd_errf(u->err, "U-Net: this model takes a %d-wide conditioning vector per batch item (label_emb)",
                           c->adm_in);
        if (embed_mlp(u, "label_emb.0", y, &ey)) return -1;
        sd_add_(e, ey);
    }
    sd_silu_(e);
    u->emb_silu = sd_scope_keep(a, s, e);
    return 0;
}

/* One block of the plan on h; the result in *y. */
static int run_block(unet_ctx *u, const ublock *b, sd_tensor x, sd_tensor h, sd_tensor *y)
{
    sd_arena *a = u->a;
    switch (b->kind) {
    case UB_CONV_IN: return conv_layer(u, b->pre, x, 1, y);
    case UB_DOWN: return conv_layer(u, b->pre, h, 2, y);
    case UB_RES: return resblock(u, b->pre, h, y);
    case UB_ATTN: return spatial_transformer(u, b->pre, b->depth, h, y);
    case UB_UP: return conv_layer(u, b->pre, upsample_nearest(a, h, b->oh, b->ow), 1, y);
    case UB_OUT: {
        sd_tensor go, bo;
        if (norm_weights(u, "out", "0", h.ne[1], &go, &bo)) return -1;
        if (h.ne[1] % u->c->groups) return sd_errf(u->err, "U-Net out.0: channels not divisible by groups");
        return conv_layer(u, "out.2", sd_groupnorm_silu(a, h, u->c->groups, &go, &bo, 1e-5f), 1, y);
    }
    }
    return sd_errf(u->err, "U-Net: unknown block");
}

static int unet_run(unet_ctx *u, const uplan *p, sd_tensor x, const float *t, sd_tensor y, sd_tensor *out)
{
    sd_arena *a = u->a;
    if (unet_time_embedding(u, t, x.ne[0], y)) return -1;
    sd_tensor skips[MAX_SKIPS];
    int nskip = 0;
    sd_tensor h = x;
    sd_scope hs = {0};
    int in_decoder = 0;
    for (int i = 0; i < p->n; i++) {
        const ublock *b = &p->b[i];
        if (b->decoder && !in_decoder) {
            /* From here on, h is not a skip connection: each block may overwrite its input. */
            hs = sd_scope_open(a);
            in_decoder = 1;
        }
        sd_tensor in = h, y;
        if (b->skip) {
            if (nskip == 0) return sd_errf(u->err, "U-Net: skip connections exhausted");
            const sd_tensor sk = skips[--nskip];
            if (sk.ne[2] != h.ne[2] || sk.ne[3] != h.ne[3])
                return sd_errf(u->err, "U-Net %s: size %lldx%lld does not match skip %lldx%lld", b->pre,
                               (long long)h.ne[2], (long long)h.ne[3], (long long)sk.ne[2], (long long)sk.ne[3]);
            in = sd_concat1(a, h, sk);
        }
        if (run_block(u, b, x, in, &y)) return -1;
        h = in_decoder && b->keep ? sd_scope_keep(a, hs, y) : y;
        if (b->push) {
            if (nskip == MAX_SKIPS) return sd_errf(u->err, "U-Net: too many skip connections");
            skips[nskip++] = h;
        }
    }
    if (nskip != 0) return sd_errf(u->err, "U-Net: %d skip connections left over", nskip);
    *out = h;
    return 0;
}

int sd_unet_forward(sd_model *m, sd_arena *a, sd_tensor x, const float *t, sd_tensor context, sd_tensor y,
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
    uplan p;
    if (unet_plan(c, x.ne[2], x.ne[3], &p)) {
        free(p.b);
        return sd_errf(err, "U-Net: unsupported configuration (%d levels, %d res blocks)", c->n_levels,
                       c->num_res_blocks);
    }
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        free(p.b);
        return sd_errcf(err, SD_ERR_NOMEM, "U-Net: out of memory for activations (latent %s)",
                        sd_shape_str(x, b1, sizeof b1));
    }
    a->guard = &jb;
    sd_arena_reserve(a, sd_unet_memory_bytes(m, x.ne[0], x.ne[2], x.ne[3], context.ne[1]));
    int rc = unet_run(&u, &p, x, t, y, out);
    a->guard = prev;
    free(p.b);
    if (rc && err && !err->msg[0]) sd_errf(err, "U-Net: failed");
    return rc;
}
