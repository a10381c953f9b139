/* vae.c — the Stable Diffusion autoencoder (CompVis ldm/modules/diffusionmodules/model.py
 * Encoder/Decoder, AutoencoderKL in ldm/models/autoencoder.py), by LDM weight names.
 *
 * Decoder: post_quant_conv (1×1) → conv_in → mid (res, attn, res) → up levels from the deepest
 * (decoder.up.{n_levels−1}) to 0, each with num_res_blocks+1 res blocks and, except level 0, a
 * nearest-×2 upsample + 3×3 conv → GroupNorm+SiLU → conv_out.
 * Encoder: conv_in → down levels 0..n_levels−1 with num_res_blocks res blocks each and, except
 * the last level, a stride-2 3×3 conv after zero padding (0 top, 1 bottom, 0 left, 1 right) →
 * mid → GroupNorm+SiLU → conv_out (2·z_channels, "double_z") → quant_conv (1×1).
 * Every GroupNorm has `groups` groups and eps 1e-6 (CompVis Normalize, diffusers norm_eps 1e-6).
 *
 * Memory: activations at full resolution are large (512×512 output: 128 MB per 128-channel
 * tensor), so each block compacts its result down to where its temporaries started
 * (sd_scope_keep) and batch items are decoded one at a time.
 */
#include "sdgen/vae.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sdgen/ops.h"
#include "torch_expf.h"

#define VAE_EPS 1e-6f
#define VAE_MAX_SIDE 16384 /* pixels per side: bounds every size computed below */

typedef struct vae_ctx {
    sd_model *m;
    sd_arena *a;
    sd_err *err;
    int groups;
} vae_ctx;

/* ---- the architecture, from the shapes of an LDM checkpoint ---- */

int sd_vae_derive(sd_model *m, sd_err *err)
{
    sd_vae_config *c = &m->vae;
    memset(c, 0, sizeof *c);
    const char *P = SD_PREFIX_VAE;
    c->has_encoder = sd_model_has(m, "%sencoder.conv_in.weight", P);
    c->has_decoder = sd_model_has(m, "%sdecoder.conv_in.weight", P);
    c->groups = 32;
    int levels = 0;
    if (c->has_encoder) {
        c->ch = (int)sd_model_dim(m, 0, "%sencoder.conv_in.weight", P);
        c->in_channels = (int)sd_model_dim(m, 1, "%sencoder.conv_in.weight", P);
        c->z_channels = (int)(sd_model_dim(m, 0, "%sencoder.conv_out.weight", P) / 2);
        while (levels < SD_MAX_LEVELS && sd_model_has(m, "%sencoder.down.%d.block.0.conv1.weight", P, levels)) levels++;
        int nrb = 0;
        while (nrb < 16 && sd_model_has(m, "%sencoder.down.0.block.%d.conv1.weight", P, nrb)) nrb++;
        c->num_res_blocks = nrb;
        for (int l = 0; l < levels; l++)
            c->ch_mult[l] = c->ch > 0 ? (int)(sd_model_dim(m, 0, "%sencoder.down.%d.block.0.conv2.weight", P, l) / c->ch) : 0;
    }
    if (c->has_decoder) {
        int64_t ch = sd_model_dim(m, 1, "%sdecoder.conv_out.weight", P);
        int dl = 0;
        while (dl < SD_MAX_LEVELS && sd_model_has(m, "%sdecoder.up.%d.block.0.conv1.weight", P, dl)) dl++;
        int nrb = 0;
        while (nrb < 16 && sd_model_has(m, "%sdecoder.up.0.block.%d.conv1.weight", P, nrb)) nrb++;
        if (!c->has_encoder) {
            c->ch = (int)ch;
            c->in_channels = (int)sd_model_dim(m, 0, "%sdecoder.conv_out.weight", P);
            c->z_channels = (int)sd_model_dim(m, 1, "%sdecoder.conv_in.weight", P);
            c->num_res_blocks = nrb - 1;
            levels = dl;
            for (int l = 0; l < levels; l++)
                c->ch_mult[l] = ch > 0 ? (int)(sd_model_dim(m, 0, "%sdecoder.up.%d.block.0.conv2.weight", P, l) / ch) : 0;
        } else if (dl != levels || ch != c->ch || nrb != c->num_res_blocks + 1) {
            return sd_errf(err, "%s: VAE encoder and decoder disagree on their sizes", m->path);
        }
    }
    c->n_levels = levels;
    if (c->ch <= 0 || c->z_channels <= 0 || levels == 0 || c->num_res_blocks <= 0 || c->in_channels <= 0)
        return sd_errf(err, "%s: cannot work out the VAE's sizes from its tensors", m->path);
    for (int l = 0; l < levels; l++)
        if (c->ch_mult[l] <= 0) return sd_errf(err, "%s: VAE level %d has no width", m->path, l);
    m->has_vae = 1;
    return 0;
}

/* ---- work ---- */

static double conv_flops(double cin, double cout, double k, double h, double w) { return 2 * cin * cout * k * k * h * w; }

static double res_flops(double cin, double cout, double h, double w)
{
    double f = conv_flops(cin, cout, 3, h, w) + conv_flops(cout, cout, 3, h, w);
    if (cin != cout) f += conv_flops(cin, cout, 1, h, w);
    return f;
}

double sd_vae_decode_flops(const sd_vae_config *v, int64_t h0, int64_t w0)
{
    double c = (double)v->ch * v->ch_mult[v->n_levels - 1], h = (double)h0, w = (double)w0, f = 0;
    f += 2.0 * v->z_channels * v->z_channels * h * w; /* post_quant_conv */
    f += conv_flops(v->z_channels, c, 3, h, w);
    f += 2 * res_flops(c, c, h, w) + 2 * 4 * h * w * c * c + 2 * 2 * (h * w) * (h * w) * c; /* mid */
    for (int l = v->n_levels - 1; l >= 0; l--) {
        const double co = (double)v->ch * v->ch_mult[l];
        for (int j = 0; j <= v->num_res_blocks; j++) {
            f += res_flops(c, co, h, w);
            c = co;
        }
        if (l != 0) {
            h *= 2;
            w *= 2;
            f += conv_flops(c, c, 3, h, w);
        }
    }
    return f + conv_flops(c, v->in_channels, 3, h, w);
}

/* ---- the tensors the coders read, checked by name and shape at load ---- */

static void check_res(sd_check *k, const char *pre, int64_t cin, int64_t cout)
{
    char p[200];
    snprintf(p, sizeof p, "%snorm1.", pre);
    sd_check_norm(k, p, cin);
    snprintf(p, sizeof p, "%sconv1.", pre);
    sd_check_conv(k, p, cout, cin, 3);
    snprintf(p, sizeof p, "%snorm2.", pre);
    sd_check_norm(k, p, cout);
    snprintf(p, sizeof p, "%sconv2.", pre);
    sd_check_conv(k, p, cout, cout, 3);
    if (cin != cout) {
        snprintf(p, sizeof p, "%snin_shortcut.", pre);
        sd_check_conv(k, p, cout, cin, 1);
    }
}

/* mid.block_1, mid.attn_1 (q, k, v, proj_out as 1×1 convs), mid.block_2 of "encoder" or "decoder". */
static void check_mid(sd_check *k, const char *coder, int64_t c)
{
    char p[200];
    snprintf(p, sizeof p, SD_PREFIX_VAE "%s.mid.block_1.", coder);
    check_res(k, p, c, c);
    snprintf(p, sizeof p, SD_PREFIX_VAE "%s.mid.attn_1.norm.", coder);
    sd_check_norm(k, p, c);
    static const char *const proj[] = {"q", "k", "v", "proj_out"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, SD_PREFIX_VAE "%s.mid.attn_1.%s.", coder, proj[i]);
        sd_check_conv(k, p, c, c, 1);
    }
    snprintf(p, sizeof p, SD_PREFIX_VAE "%s.mid.block_2.", coder);
    check_res(k, p, c, c);
}

int sd_vae_check(const sd_model *m, sd_err *err)
{
    const sd_vae_config *v = &m->vae;
    sd_check k = {m, err, 0};
    const int64_t ch = v->ch, z = v->z_channels, L = v->n_levels;
    char pre[200];
    if (ch % v->groups) {
        sd_check_fail(&k, "VAE width %lld is not a multiple of %d GroupNorm groups", (long long)ch, v->groups);
        return -1;
    }
    if (v->has_encoder) {
        sd_check_conv(&k, SD_PREFIX_VAE "encoder.conv_in.", ch, v->in_channels, 3);
        int64_t c = ch;
        for (int l = 0; l < L; l++) {
            const int64_t co = ch * v->ch_mult[l];
            for (int j = 0; j < v->num_res_blocks; j++) {
                snprintf(pre, sizeof pre, SD_PREFIX_VAE "encoder.down.%d.block.%d.", l, j);
                check_res(&k, pre, c, co);
                c = co;
            }
            if (l != L - 1) {
                snprintf(pre, sizeof pre, SD_PREFIX_VAE "encoder.down.%d.downsample.conv.", l);
                sd_check_conv(&k, pre, c, c, 3);
            }
        }
        check_mid(&k, "encoder", c);
        sd_check_norm(&k, SD_PREFIX_VAE "encoder.norm_out.", c);
        sd_check_conv(&k, SD_PREFIX_VAE "encoder.conv_out.", 2 * z, c, 3);
        sd_check_conv(&k, SD_PREFIX_VAE "quant_conv.", 2 * z, 2 * z, 1);
    }
    if (v->has_decoder) {
        int64_t c = ch * v->ch_mult[L - 1];
        sd_check_conv(&k, SD_PREFIX_VAE "post_quant_conv.", z, z, 1);
        sd_check_conv(&k, SD_PREFIX_VAE "decoder.conv_in.", c, z, 3);
        check_mid(&k, "decoder", c);
        for (int l = (int)L - 1; l >= 0; l--) {
            const int64_t co = ch * v->ch_mult[l];
            for (int j = 0; j <= v->num_res_blocks; j++) {
                snprintf(pre, sizeof pre, SD_PREFIX_VAE "decoder.up.%d.block.%d.", l, j);
                check_res(&k, pre, c, co);
                c = co;
            }
            if (l != 0) {
                snprintf(pre, sizeof pre, SD_PREFIX_VAE "decoder.up.%d.upsample.conv.", l);
                sd_check_conv(&k, pre, c, c, 3);
            }
        }
        sd_check_norm(&k, SD_PREFIX_VAE "decoder.norm_out.", c);
        sd_check_conv(&k, SD_PREFIX_VAE "decoder.conv_out.", v->in_channels, c, 3);
    }
    return k.failed ? -1 : 0;
}

/* ---- weights, looked up by name and checked against the shape the code will index ---- */

/* Fetch "<fmt...>" and require ndim dims equal to d[] (d[i] < 0: any). */
static int vae_w(vae_ctx *c, sd_tensor *out, int ndim, const int64_t *d, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int vae_w(vae_ctx *c, sd_tensor *out, int ndim, const int64_t *d, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof name) return sd_errf(c->err, "vae: weight name too long");
    return sd_model_weight_shaped(c->m, c->a, name, ndim, d, out, c->err);
}

/* Conv weight [cout, cin, k, k] and bias [cout] under "<base>". */
static int vae_conv_w(vae_ctx *c, const char *base, int64_t cout, int64_t cin, int64_t k,
                      sd_tensor *w, sd_tensor *b)
{
    int64_t dw[4] = {cout, cin, k, k}, db[1] = {cout};
    if (vae_w(c, w, 4, dw, "%s.weight", base)) return -1;
    return vae_w(c, b, 1, db, "%s.bias", base);
}

/* GroupNorm gain/bias [ch]. */
static int vae_norm_w(vae_ctx *c, const char *base, int64_t ch, sd_tensor *g, sd_tensor *b)
{
    int64_t d[1] = {ch};
    if (ch % c->groups != 0)
        return sd_errf(c->err, "vae: %s: %lld channels not divisible into %d groups", base, (long long)ch,
                       c->groups);
    if (vae_w(c, g, 1, d, "%s.weight", base)) return -1;
    return vae_w(c, b, 1, d, "%s.bias", base);
}

/* Conv of x with the weights under base (k×k, stride 1, "same" padding). */
static int vae_conv(vae_ctx *c, const char *base, sd_tensor x, int64_t cout, int k, sd_tensor *y)
{
    sd_tensor w, b;
    if (vae_conv_w(c, base, cout, x.ne[1], k, &w, &b)) return -1;
    *y = sd_conv2d_ae(c->a, x, &w, &b, 1, k / 2, NULL);
    return 0;
}

/* ---- blocks ---- */

/* CompVis ResnetBlock without time embedding (temb_channels 0):
 * h = conv2(silu(norm2(conv1(silu(norm1(x)))))); out = shortcut(x) + h, the shortcut being
 * the 1×1 nin_shortcut when the channel count changes. Dropout is the identity at inference.
 * Arena order: conv1's output h is allocated before norm1(x), which then sits on top and goes
 * without moving anything; norm2 + SiLU runs in place on h; the result comes last, after x and h,
 * and the caller's keep moves it down once. (Moving every stage's output down, as each ended,
 * moved ~2.3 GB per 512×512 decode: 0.3–0.4 s.) The live tensors at each moment are those
 * vae_res_peak counts. */
static int vae_resblock(vae_ctx *c, const char *base, sd_tensor x, int64_t cout, sd_tensor *out)
{
    char nb[320];
    sd_tensor g, b, w, bias;
    const int64_t cin = x.ne[1];

    sd_tensor h = sd_tensor_4d(c->a, x.ne[0], cout, x.ne[2], x.ne[3]);
    const size_t top = sd_arena_mark(c->a);
    snprintf(nb, sizeof nb, "%s.norm1", base);
    if (vae_norm_w(c, nb, cin, &g, &b)) return -1;
    sd_tensor n1 = sd_groupnorm_silu(c->a, x, c->groups, &g, &b, VAE_EPS);
    snprintf(nb, sizeof nb, "%s.conv1", base);
    if (vae_conv_w(c, nb, cout, cin, 3, &w, &bias)) return -1;
    sd_conv2d_ae_into(c->a, h, n1, &w, &bias, 1, 1, NULL);
    sd_arena_release(c->a, top); /* norm1(x) and conv1's weights */

    snprintf(nb, sizeof nb, "%s.norm2", base);
    if (vae_norm_w(c, nb, cout, &g, &b)) return -1;
    sd_groupnorm_silu_(h, c->groups, &g, &b, VAE_EPS);
    snprintf(nb, sizeof nb, "%s.conv2", base);
    if (vae_conv(c, nb, h, cout, 3, &h)) return -1;

    if (cin != cout) {
        sd_tensor s;
        snprintf(nb, sizeof nb, "%s.nin_shortcut", base);
        if (vae_conv(c, nb, x, cout, 1, &s)) return -1;
        sd_add_(h, s);
    } else {
        sd_add_(h, x);
    }
    *out = h;
    return 0;
}

/* CompVis AttnBlock: single-head self-attention over the h·w positions of GroupNorm(x), q/k/v
 * and proj_out are 1×1 convolutions (LDM weights [C, C, 1, 1], applied here as linear maps on
 * [1, h·w, C]), scores scaled by C^−1/2; out = x + proj_out(attn). */
static int vae_attnblock(vae_ctx *c, const char *base, sd_tensor x, sd_tensor *out)
{
    const int64_t C = x.ne[1], H = x.ne[2], W = x.ne[3];
    sd_tensor g, b, w[4], bias[4];
    static const char *const names[4] = {"q", "k", "v", "proj_out"};
    char nb[320];
    snprintf(nb, sizeof nb, "%s.norm", base);
    if (vae_norm_w(c, nb, C, &g, &b)) return -1;
    for (int i = 0; i < 4; i++) {
        snprintf(nb, sizeof nb, "%s.%s", base, names[i]);
        if (vae_conv_w(c, nb, C, C, 1, &w[i], &bias[i])) return -1;
        int64_t s2[2] = {C, C};
        w[i] = sd_tensor_reshape(w[i], 2, s2);
    }
    sd_scope k = sd_scope_open(c->a);
    sd_tensor hn = sd_groupnorm(c->a, x, c->groups, &g, &b, VAE_EPS);
    sd_tensor t = sd_nchw_to_nlc(c->a, hn);
    sd_tensor q = sd_linear(c->a, t, &w[0], &bias[0]);
    sd_tensor kk = sd_linear(c->a, t, &w[1], &bias[1]);
    sd_tensor v = sd_linear(c->a, t, &w[2], &bias[2]);
    sd_tensor o = sd_attention(c->a, q, kk, v, 1, 0);
    o = sd_linear(c->a, o, &w[3], &bias[3]);
    sd_tensor y = sd_nlc_to_nchw(c->a, o, H, W);
    sd_add_(y, x);
    *out = sd_scope_keep(c->a, k, y);
    return 0;
}

/* mid.block_1, mid.attn_1, mid.block_2 under "<pfx>mid"; each result kept at the scope's start. */
static int vae_mid(vae_ctx *c, const char *pfx, sd_tensor x, sd_tensor *out)
{
    char nb[256];
    const int64_t C = x.ne[1];
    sd_scope k = sd_scope_open(c->a);
    snprintf(nb, sizeof nb, "%smid.block_1", pfx);
    if (vae_resblock(c, nb, x, C, &x)) return -1;
    x = sd_scope_keep(c->a, k, x);
    snprintf(nb, sizeof nb, "%smid.attn_1", pfx);
    if (vae_attnblock(c, nb, x, &x)) return -1;
    snprintf(nb, sizeof nb, "%smid.block_2", pfx);
    if (vae_resblock(c, nb, x, C, &x)) return -1;
    *out = sd_scope_keep(c->a, k, x);
    return 0;
}

/* norm_out, SiLU, conv_out (3×3) under pfx. */
static int vae_out(vae_ctx *c, const char *pfx, sd_tensor x, int64_t cout, sd_tensor *out)
{
    char nb[256];
    sd_tensor g, b;
    sd_scope k = sd_scope_open(c->a);
    snprintf(nb, sizeof nb, "%snorm_out", pfx);
    if (vae_norm_w(c, nb, x.ne[1], &g, &b)) return -1;
    sd_tensor h = sd_groupnorm_silu(c->a, x, c->groups, &g, &b, VAE_EPS);
    snprintf(nb, sizeof nb, "%sconv_out", pfx);
    if (vae_conv(c, nb, h, cout, 3, &h)) return -1;
    *out = sd_scope_keep(c->a, k, h);
    return 0;
}

static int vae_check_config(const sd_model *m, sd_err *err)
{
    const sd_vae_config *v = &m->vae;
    if (!m->has_vae) return sd_errf(err, "vae: the model has no VAE (%s*)", SD_PREFIX_VAE);
    if (v->n_levels < 1 || v->n_levels > SD_MAX_LEVELS || v->ch < 1 || v->ch > 4096 || v->z_channels < 1 ||
        v->z_channels > 64 || v->num_res_blocks < 1 || v->num_res_blocks > 16 || v->groups < 1 ||
        v->in_channels < 1 || v->in_channels > 16)
        return sd_errf(err, "vae: unsupported configuration (levels %d, ch %d, z %d, res blocks %d, groups %d)",
                       v->n_levels, v->ch, v->z_channels, v->num_res_blocks, v->groups);
    for (int i = 0; i < v->n_levels; i++) {
        if (v->ch_mult[i] < 1 || v->ch_mult[i] > 64)
            return sd_errf(err, "vae: bad ch_mult[%d] = %d", i, v->ch_mult[i]);
        /* SD VAEs have attn_resolutions [] (attention only in the middle block); a file with
         * per-level attention would be silently mis-run, so refuse it. */
        char nb[160];
        snprintf(nb, sizeof nb, SD_PREFIX_VAE "decoder.up.%d.attn.0.q.weight", i);
        const int dec_attn = sd_model_find(m, nb) != NULL;
        snprintf(nb, sizeof nb, SD_PREFIX_VAE "encoder.down.%d.attn.0.q.weight", i);
        if (dec_attn || sd_model_find(m, nb))
            return sd_errf(err, "vae: attention at level %d (attn_resolutions) is not supported", i);
    }
    return 0;
}

/* Run the decoder on one item z [1, zc, h, w]; result [1, 3, 8h, 8w] allocated last. */
static int vae_decode_one(vae_ctx *c, sd_tensor z, sd_tensor *out)
{
    const sd_vae_config *v = &c->m->vae;
    const int L = v->n_levels;
    char nb[256];
    sd_scope k = sd_scope_open(c->a);
    sd_tensor x;
    if (vae_conv(c, SD_PREFIX_VAE "post_quant_conv", z, v->z_channels, 1, &x)) return -1;
    int64_t cin = (int64_t)v->ch * v->ch_mult[L - 1];
    if (vae_conv(c, SD_PREFIX_VAE "decoder.conv_in", x, cin, 3, &x)) return -1;
    x = sd_scope_keep(c->a, k, x);
    if (vae_mid(c, SD_PREFIX_VAE "decoder.", x, &x)) return -1;
    for (int lvl = L - 1; lvl >= 0; lvl--) {
        int64_t cout = (int64_t)v->ch * v->ch_mult[lvl];
        for (int j = 0; j < v->num_res_blocks + 1; j++) {
            snprintf(nb, sizeof nb, SD_PREFIX_VAE "decoder.up.%d.block.%d", lvl, j);
            if (vae_resblock(c, nb, x, cout, &x)) return -1;
            x = sd_scope_keep(c->a, k, x);
        }
        if (lvl != 0) {
            /* CompVis Upsample(with_conv=True): nearest ×2, then a 3×3 conv, padding 1. */
            sd_tensor u = sd_upsample2x(c->a, x);
            snprintf(nb, sizeof nb, SD_PREFIX_VAE "decoder.up.%d.upsample.conv", lvl);
            if (vae_conv(c, nb, u, cout, 3, &u)) return -1;
            x = sd_scope_keep(c->a, k, u);
        }
    }
    if (vae_out(c, SD_PREFIX_VAE "decoder.", x, 3, &x)) return -1;
    *out = sd_scope_keep(c->a, k, x);
    return 0;
}

/* Run the encoder + quant_conv on one item img [1, 3, H, W]; result [1, 2zc, h, w] allocated last. */
static int vae_encode_one(vae_ctx *c, sd_tensor img, sd_tensor *out)
{
    const sd_vae_config *v = &c->m->vae;
    const int L = v->n_levels;
    char nb[256];
    sd_scope k = sd_scope_open(c->a);
    sd_tensor x;
    int64_t ch = v->ch;
    if (vae_conv(c, SD_PREFIX_VAE "encoder.conv_in", img, ch, 3, &x)) return -1;
    x = sd_scope_keep(c->a, k, x);
    for (int lvl = 0; lvl < L; lvl++) {
        int64_t cout = (int64_t)v->ch * v->ch_mult[lvl];
        for (int j = 0; j < v->num_res_blocks; j++) {
            snprintf(nb, sizeof nb, SD_PREFIX_VAE "encoder.down.%d.block.%d", lvl, j);
            if (vae_resblock(c, nb, x, cout, &x)) return -1;
            x = sd_scope_keep(c->a, k, x);
        }
        if (lvl != L - 1) {
            /* CompVis Downsample(with_conv=True): F.pad(x, (0, 1, 0, 1)) then a 3×3 conv with
             * stride 2 and no padding (diffusers Downsample2D with padding 0 does the same). */
            sd_tensor w, b;
            snprintf(nb, sizeof nb, SD_PREFIX_VAE "encoder.down.%d.downsample.conv", lvl);
            if (vae_conv_w(c, nb, cout, cout, 3, &w, &b)) return -1;
            sd_tensor d = sd_conv2d_pad(c->a, x, &w, &b, 2, 0, 1, 0, 1);
            x = sd_scope_keep(c->a, k, d);
        }
    }
    if (vae_mid(c, SD_PREFIX_VAE "encoder.", x, &x)) return -1;
    if (vae_out(c, SD_PREFIX_VAE "encoder.", x, 2 * (int64_t)v->z_channels, &x)) return -1;
    if (vae_conv(c, SD_PREFIX_VAE "quant_conv", x, 2 * (int64_t)v->z_channels, 1, &x)) return -1;
    *out = sd_scope_keep(c->a, k, x);
    return 0;
}

/* ---- activation memory bound ----
 * sd_scope_keep compacts only inside one arena block, so before a call the arena is given one
 * block with room for the whole call (sd_arena_reserve). The bound walks the same blocks as the code above
 * and counts, in floats, what is alive at the worst moment of each: e.g. a res block holds x,
 * norm1(x), conv1's output and the conv's im2col band; an upsample holds x, the ×2 copy and the
 * conv output. The im2col band is bounded as in ops.c (8 Mi floats, at least one output row). */

#define VAE_COL_BAND_FLOATS ((int64_t)8 << 20)

static int64_t vae_col(int64_t cin, int k, int64_t oh, int64_t ow)
{
    if (k == 1) return 0;
    int64_t K = cin * k * k, full = K * oh * ow, band = VAE_COL_BAND_FLOATS > K * ow ? VAE_COL_BAND_FLOATS : K * ow;
    return full < band ? full : band;
}

static int64_t vae_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* Peak floats of one res block on x [cin, hh, ww] (x included, result kept). */
static int64_t vae_res_peak(int64_t cin, int64_t cout, int64_t hh, int64_t ww)
{
    const int64_t R = hh * ww;
    int64_t p = (2 * cin + cout) * R + vae_col(cin, 3, hh, ww);
    p = vae_max(p, (cin + 2 * cout) * R + vae_col(cout, 3, hh, ww));
    if (cin != cout) p = vae_max(p, (cin + 3 * cout) * R);
    return p;
}

/* Peak floats of the mid attention on [C, hh, ww]. */
static int64_t vae_attn_peak(int64_t C, int64_t hh, int64_t ww)
{
    const int64_t L = hh * ww, scores = vae_max((int64_t)2 << 20, L);
    return 9 * C * L + scores;
}

static size_t vae_decode_bytes(const sd_vae_config *v, int64_t n, int64_t h, int64_t w)
{
    const int L = v->n_levels;
    int64_t c = (int64_t)v->ch * v->ch_mult[L - 1], hh = h, ww = w;
    int64_t p = (int64_t)v->z_channels * 2 * hh * ww + c * hh * ww + vae_col(v->z_channels, 3, hh, ww);
    p = vae_max(p, vae_res_peak(c, c, hh, ww));
    p = vae_max(p, vae_attn_peak(c, hh, ww));
    for (int lvl = L - 1; lvl >= 0; lvl--) {
        int64_t cout = (int64_t)v->ch * v->ch_mult[lvl];
        p = vae_max(p, vae_res_peak(c, cout, hh, ww));
        c = cout;
        if (lvl != 0) {
            hh *= 2;
            ww *= 2;
            p = vae_max(p, c * hh * ww / 4 + 2 * c * hh * ww + vae_col(c, 3, hh, ww));
        }
    }
    p = vae_max(p, 2 * c * hh * ww + 3 * hh * ww + vae_col(c, 3, hh, ww));
    /* + the output of all items, + alignment slack */
    return (size_t)(p + 3 * n * hh * ww) * sizeof(float) + ((size_t)1 << 20);
}

static size_t vae_encode_bytes(const sd_vae_config *v, int64_t n, int64_t H, int64_t W)
{
    const int L = v->n_levels;
    int64_t c = v->ch, hh = H, ww = W;
    int64_t p = c * hh * ww + vae_col(v->in_channels, 3, hh, ww);
    for (int lvl = 0; lvl < L; lvl++) {
        int64_t cout = (int64_t)v->ch * v->ch_mult[lvl];
        p = vae_max(p, vae_res_peak(c, cout, hh, ww));
        c = cout;
        if (lvl != L - 1) {
            p = vae_max(p, c * hh * ww + c * (hh / 2) * (ww / 2) + vae_col(c, 3, hh / 2, ww / 2));
            hh /= 2;
            ww /= 2;
        }
    }
    p = vae_max(p, vae_res_peak(c, c, hh, ww));
    p = vae_max(p, vae_attn_peak(c, hh, ww));
    p = vae_max(p, 2 * c * hh * ww + 4 * (int64_t)v->z_channels * hh * ww + vae_col(c, 3, hh, ww));
    return (size_t)(p + 2 * (int64_t)v->z_channels * n * hh * ww) * sizeof(float) + ((size_t)1 << 20);
}

/* Converted weights alive at once (SD_WEIGHTS_F16: they live in the block scopes like
 * activations): at most a res block's conv2 and shortcut beside the mid attention's four
 * projections, bounded by three of the VAE's largest tensor. 0 when weights are views. */
static size_t vae_weight_bytes(const sd_model *m)
{
    return 3 * (size_t)sd_model_scoped_numel(m, SD_PREFIX_VAE) * sizeof(float);
}

int sd_vae_decode(sd_model *m, sd_arena *a, sd_tensor z, sd_tensor *img, sd_err *err)
{
    if (vae_check_config(m, err)) return -1;
    const sd_vae_config *v = &m->vae;
    const int64_t f = (int64_t)1 << (v->n_levels - 1);
    char sh[96];
    if (z.ndim != 4 || z.ne[1] != v->z_channels || z.ne[0] < 1 || z.ne[2] < 1 || z.ne[3] < 1 ||
        z.ne[2] * f > VAE_MAX_SIDE || z.ne[3] * f > VAE_MAX_SIDE || z.ne[0] > 4096)
        return sd_errf(err, "vae decode: latent has shape %s, expected [n,%d,h,w] with h,w <= %lld",
                       sd_shape_str(z, sh, sizeof sh), v->z_channels, (long long)(VAE_MAX_SIDE / f));
    const int64_t n = z.ne[0], H = z.ne[2] * f, W = z.ne[3] * f;

    vae_ctx c = {m, a, err, v->groups};
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        return sd_errcf(err, SD_ERR_NOMEM, "vae decode: out of memory for a %lldx%lld image", (long long)W,
                        (long long)H);
    }
    a->guard = &jb;
    sd_arena_reserve(a, vae_decode_bytes(v, n, z.ne[2], z.ne[3]) + vae_weight_bytes(m));
    sd_tensor res = sd_tensor_4d(a, n, 3, H, W);
    for (int64_t i = 0; i < n; i++) {
        sd_scope k = sd_scope_open(a);
        sd_tensor one;
        if (vae_decode_one(&c, sd_tensor_slice0(z, i, 1), &one)) {
            a->guard = prev;
            return sd_err_prefix(err, "vae decode");
        }
        memcpy(res.data + i * 3 * H * W, one.data, (size_t)(3 * H * W) * sizeof(float));
        sd_scope_close(a, k);
    }
    a->guard = prev;
    *img = res;
    return 0;
}

/* ---- tiled decode (diffusers AutoencoderKL.tiled_decode) ----
 * diffusers splits z into tiles of tile_latent_min_size latent pixels whose starts are multiples
 * of stride = tile·(1 − tile_overlap_factor), decodes each alone, then walks the tiles row by row:
 * tile (i, j) is blended in place with the bottom rows of tile (i−1, j) (blend_v) and then with the
 * right columns of tile (i, j−1) (blend_h), each over e = min(both sizes, overlap·8) pixels with
 * weights (1 − y/e, y/e), and its first stride·8 rows and columns go into the image. A tile is
 * final once its own blends are done (later blends only modify the newer tile), so the walk can
 * run as the tiles are decoded, keeping only the previous tile row: memory is one tile's decoder
 * peak plus two rows of 3-channel tiles, whatever the image size.
 * One deliberate difference: diffusers also decodes a last tile that starts inside a tile which
 * already reaches the edge (a sliver of at most `overlap` latent pixels, e.g. 97 latent rows with
 * tile 64 / overlap 16: a 1-row tile at 96) and blends it in; decoded alone such a sliver is far
 * from the untiled result, so here the tile reaching the edge ends the axis and is used to its end.
 * Every other size gives diffusers' tiles, weights and crops. */

typedef struct vae_axis {
    int64_t n;           /* tiles */
    int64_t start[VAE_MAX_SIDE / 16]; /* latent start of each tile; its length is min(tile, size − start) */
} vae_axis;

/* Returns -1 when the axis needs more tiles than start[] holds (only for tiny tiles on huge latents). */
static int vae_axis_plan(vae_axis *ax, int64_t size, int64_t tile, int64_t stride)
{
    ax->n = 0;
    for (int64_t s = 0; s < size; s += stride) {
        if (ax->n == (int64_t)(sizeof ax->start / sizeof ax->start[0])) return -1;
        ax->start[ax->n++] = s;
        if (s + tile >= size) break; /* this tile reaches the edge: no sliver after it */
    }
    return 0;
}

/* b[y] = a[ah − e + y]·(1 − y/e) + b[y]·(y/e) for the first e = min(ah, bh, ext) rows of b
 * (diffusers blend_v: Python-double weights rounded to float32, two float32 products and a
 * float32 sum, unfused). Tiles are [3, h, w] with the same w. */
static void vae_blend_v(const float *a, int64_t ah, float *b, int64_t bh, int64_t w, int64_t ext)
{
    int64_t e = ah < bh ? ah : bh;
    if (ext < e) e = ext;
    for (int64_t c = 0; c < 3; c++)
        for (int64_t y = 0; y < e; y++) {
            const float wb = (float)((double)y / (double)e), wa = (float)(1.0 - (double)y / (double)e);
            const float *ar = a + (c * ah + ah - e + y) * w;
            float *br = b + (c * bh + y) * w;
            for (int64_t x = 0; x < w; x++) {
                volatile float p = ar[x] * wa;
                volatile float q = br[x] * wb;
                br[x] = p + q;
            }
        }
}

/* Same across columns (diffusers blend_h); a [3, h, aw], b [3, h, bw]. */
static void vae_blend_h(const float *a, int64_t aw, float *b, int64_t bw, int64_t h, int64_t ext)
{
    int64_t e = aw < bw ? aw : bw;
    if (ext < e) e = ext;
    for (int64_t x = 0; x < e; x++) {
        const float wb = (float)((double)x / (double)e), wa = (float)(1.0 - (double)x / (double)e);
        for (int64_t c = 0; c < 3; c++)
            for (int64_t y = 0; y < h; y++) {
                volatile float p = a[(c * h + y) * aw + aw - e + x] * wa;
                volatile float q = b[(c * h + y) * bw + x] * wb;
                b[(c * h + y) * bw + x] = p + q;
            }
    }
}

/* One block for the image, two rows of decoded tiles, the tile's latent and one tile's decode. */
static size_t vae_tiled_bytes(const sd_vae_config *v, int64_t n, int64_t h, int64_t w, int64_t T, int64_t ncols)
{
    const int64_t f = (int64_t)1 << (v->n_levels - 1), th = h < T ? h : T, tw = w < T ? w : T;
    return (size_t)(3 * n * h * f * w * f + 2 * ncols * 3 * th * f * tw * f + v->z_channels * th * tw) * sizeof(float) +
           (size_t)(2 * ncols + 3) * 64 + vae_decode_bytes(v, 1, th, tw);
}

size_t sd_vae_decode_bytes(const sd_model *m, int64_t n, int64_t h, int64_t w, int tile_latent, int overlap_latent)
{
    const sd_vae_config *v = &m->vae;
    if (n < 1 || n > 4096 || h < 1 || w < 1 || v->n_levels < 1 || v->n_levels > SD_MAX_LEVELS) return 0;
    const int64_t f = (int64_t)1 << (v->n_levels - 1);
    if (h * f > VAE_MAX_SIDE || w * f > VAE_MAX_SIDE) return 0;
    const size_t wb = vae_weight_bytes(m);
    if (tile_latent == 0) return vae_decode_bytes(v, n, h, w) + wb;
    if (tile_latent < 4 || tile_latent > VAE_MAX_SIDE / f || overlap_latent < 0 || 2 * overlap_latent > tile_latent)
        return 0;
    if (h <= tile_latent && w <= tile_latent) return vae_decode_bytes(v, n, h, w) + wb;
    vae_axis ax;
    if (vae_axis_plan(&ax, w, tile_latent, tile_latent - overlap_latent)) return 0;
    return vae_tiled_bytes(v, n, h, w, tile_latent, ax.n) + wb;
}

int sd_vae_decode_tiled(sd_model *m, sd_arena *a, sd_tensor z, int tile_latent, int overlap_latent,
                        sd_tensor *img, sd_err *err)
{
    if (vae_check_config(m, err)) return -1;
    const sd_vae_config *v = &m->vae;
    const int64_t f = (int64_t)1 << (v->n_levels - 1);
    char sh[96];
    if (z.ndim != 4 || z.ne[1] != v->z_channels || z.ne[0] < 1 || z.ne[2] < 1 || z.ne[3] < 1 ||
        z.ne[2] * f > VAE_MAX_SIDE || z.ne[3] * f > VAE_MAX_SIDE || z.ne[0] > 4096)
        return sd_errf(err, "vae decode: latent has shape %s, expected [n,%d,h,w] with h,w <= %lld",
                       sd_shape_str(z, sh, sizeof sh), v->z_channels, (long long)(VAE_MAX_SIDE / f));
    /* A tile under 4 latent pixels is mostly zero padding to its convolutions; an overlap over
     * half a tile would let one tile's blend reach the rows the next blend reads. */
    if (tile_latent < 4 || tile_latent > VAE_MAX_SIDE / f || overlap_latent < 0 || 2 * overlap_latent > tile_latent)
        return sd_errf(err, "vae decode: tile %d / overlap %d latent pixels: need 4 <= tile <= %lld and "
                       "0 <= overlap <= tile/2", tile_latent, overlap_latent, (long long)(VAE_MAX_SIDE / f));
    const int64_t h = z.ne[2], w = z.ne[3];
    /* diffusers _decode tiles only when the latent exceeds the tile on a side; otherwise it is the
     * plain decode, bit for bit. */
    if (h <= tile_latent && w <= tile_latent) return sd_vae_decode(m, a, z, img, err);

    const int64_t n = z.ne[0], zc = z.ne[1], H = h * f, W = w * f, T = tile_latent;
    const int64_t S = T - overlap_latent, B = (int64_t)overlap_latent * f;
    vae_axis ay, ax; /* 8 KB each */
    if (vae_axis_plan(&ay, h, T, S) || vae_axis_plan(&ax, w, T, S))
        return sd_errf(err, "vae decode: tile %d / overlap %d make more than %d tiles per side", tile_latent,
                       overlap_latent, (int)(sizeof ay.start / sizeof ay.start[0]));
    const int64_t th = h < T ? h : T, tw = w < T ? w : T; /* largest tile, latent */
    const int64_t tile_px = 3 * th * f * tw * f;         /* floats of one decoded tile */

    vae_ctx c = {m, a, err, v->groups};
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        return sd_errcf(err, SD_ERR_NOMEM, "vae decode: out of memory for a %lldx%lld image in %lldx%lld tiles",
                        (long long)W, (long long)H, (long long)(tw * f), (long long)(th * f));
    }
    a->guard = &jb;
    sd_arena_reserve(a, vae_tiled_bytes(v, n, h, w, T, ax.n) + vae_weight_bytes(m));
    sd_tensor res = sd_tensor_4d(a, n, 3, H, W);
    float *rows[2];
    rows[0] = sd_arena_alloc(a, (size_t)(ax.n * tile_px) * sizeof(float));
    rows[1] = sd_arena_alloc(a, (size_t)(ax.n * tile_px) * sizeof(float));
    for (int64_t item = 0; item < n; item++) {
        const float *zi = z.data + item * zc * h * w;
        float *out = res.data + item * 3 * H * W;
        for (int64_t i = 0; i < ay.n; i++) {
            const int64_t y0 = ay.start[i], ylen = (y0 + T < h ? T : h - y0);
            float *cur = rows[i & 1], *above = rows[(i + 1) & 1];
            for (int64_t j = 0; j < ax.n; j++) {
                const int64_t x0 = ax.start[j], xlen = (x0 + T < w ? T : w - x0);
                const int64_t ph = ylen * f, pw = xlen * f;
                sd_scope k = sd_scope_open(a);
                sd_tensor zt = sd_tensor_4d(a, 1, zc, ylen, xlen), dec;
                for (int64_t ch = 0; ch < zc; ch++)
                    for (int64_t y = 0; y < ylen; y++)
                        memcpy(zt.data + (ch * ylen + y) * xlen, zi + (ch * h + y0 + y) * w + x0,
                               (size_t)xlen * sizeof(float));
                if (vae_decode_one(&c, zt, &dec)) {
                    a->guard = prev;
                    return sd_err_prefix(err, "vae decode (tile at latent %lld,%lld)", (long long)y0, (long long)x0);
                }
                float *t = cur + j * tile_px;
                memcpy(t, dec.data, (size_t)(3 * ph * pw) * sizeof(float));
                sd_scope_close(a, k); /* the tile's activations */
                if (i > 0) {
                    const int64_t ah = (ay.start[i - 1] + T < h ? T : h - ay.start[i - 1]) * f;
                    vae_blend_v(above + j * tile_px, ah, t, ph, pw, B);
                }
                if (j > 0) {
                    const int64_t aw = (ax.start[j - 1] + T < w ? T : w - ax.start[j - 1]) * f;
                    vae_blend_h(cur + (j - 1) * tile_px, aw, t, pw, ph, B);
                }
                /* diffusers keeps tile[:stride·8, :stride·8]; the tile reaching the edge is kept to it. */
                const int64_t keep_h = (i + 1 < ay.n ? S * f : ph), keep_w = (j + 1 < ax.n ? S * f : pw);
                for (int64_t ch = 0; ch < 3; ch++)
                    for (int64_t y = 0; y < keep_h; y++)
                        memcpy(out + (ch * H + y0 * f + y) * W + x0 * f, t + (ch * ph + y) * pw,
                               (size_t)keep_w * sizeof(float));
            }
        }
    }
    a->guard = prev;
    *img = res;
    return 0;
}

int sd_vae_encode(sd_model *m, sd_arena *a, sd_tensor img, sd_tensor *moments, sd_err *err)
{
    if (vae_check_config(m, err)) return -1;
    const sd_vae_config *v = &m->vae;
    const int64_t f = (int64_t)1 << (v->n_levels - 1);
    char sh[96];
    if (img.ndim != 4 || img.ne[1] != v->in_channels || img.ne[0] < 1 || img.ne[0] > 4096 || img.ne[2] < f ||
        img.ne[3] < f || img.ne[2] % f || img.ne[3] % f || img.ne[2] > VAE_MAX_SIDE || img.ne[3] > VAE_MAX_SIDE)
        return sd_errf(err, "vae encode: image has shape %s, expected [n,%d,H,W] with H,W multiples of %lld, <= %d",
                       sd_shape_str(img, sh, sizeof sh), v->in_channels, (long long)f, VAE_MAX_SIDE);
    const int64_t n = img.ne[0], h = img.ne[2] / f, w = img.ne[3] / f, zc2 = 2 * (int64_t)v->z_channels;

    vae_ctx c = {m, a, err, v->groups};
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        return sd_errcf(err, SD_ERR_NOMEM, "vae encode: out of memory for a %lldx%lld image",
                        (long long)img.ne[3], (long long)img.ne[2]);
    }
    a->guard = &jb;
    sd_arena_reserve(a, vae_encode_bytes(v, n, img.ne[2], img.ne[3]) + vae_weight_bytes(m));
    sd_tensor res = sd_tensor_4d(a, n, zc2, h, w);
    for (int64_t i = 0; i < n; i++) {
        sd_scope k = sd_scope_open(a);
        sd_tensor one;
        if (vae_encode_one(&c, sd_tensor_slice0(img, i, 1), &one)) {
            a->guard = prev;
            return sd_err_prefix(err, "vae encode");
        }
        if (one.ne[1] != zc2 || one.ne[2] != h || one.ne[3] != w) {
            a->guard = prev;
            return sd_errf(err, "vae encode: encoder produced an unexpected shape %s",
                           sd_shape_str(one, sh, sizeof sh));
        }
        memcpy(res.data + i * zc2 * h * w, one.data, (size_t)(zc2 * h * w) * sizeof(float));
        sd_scope_close(a, k);
    }
    a->guard = prev;
    *moments = res;
    return 0;
}

/* diffusers DiagonalGaussianDistribution: logvar clamped to [−30, 20], std = exp(0.5·logvar),
 * sample = mean + std·ε; the img2img pipeline then multiplies by the VAE scaling factor.
 * PyTorch evaluates each of these as a separate float32 tensor op, so no multiply-add may be
 * fused here (the volatile stores keep the compiler from contracting them). */
void sd_vae_sample(const float *moments, const float *eps, int64_t per_channel_plane, int z_channels,
                   float scale, float *out)
{
    const int64_t n = per_channel_plane * z_channels;
    const float *mean = moments, *logvar = moments + n;
    for (int64_t i = 0; i < n; i++) {
        float lv = logvar[i];
        lv = lv < -30.0f ? -30.0f : (lv > 20.0f ? 20.0f : lv);
        volatile float half = 0.5f * lv;
        volatile float sd = sd_expf(half);
        volatile float t = sd * eps[i];
        volatile float zz = mean[i] + t;
        out[i] = scale * zz;
    }
}
