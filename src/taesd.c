/* taesd.c — madebyollin's tiny autoencoder (TAESD / TAESDXL) as diffusers 0.25.1 runs it
 * (models/autoencoders/vae.py DecoderTiny / EncoderTiny, AutoencoderTinyBlock; docs/SEMANTICS.md "TAESD").
 *
 * Decoder: tanh(z/3)·3 → conv 3×3 (C→64, bias) → ReLU → Blocks, each group of them followed by nearest ×2
 * and a 3×3 conv without bias → conv 3×3 (64→3, bias) = raw (nominally [0, 1]) → raw·2 − 1.
 * Encoder: (x + 1)/2 → conv 3×3 (3→64, bias) → Blocks and stride-2 3×3 convs without bias → conv 3×3 (64→C).
 * Block(x) = ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x), every conv 3×3 with bias and padding 1.
 *
 * The layer lists are read off the tensors (a layer with "conv.0.weight" is a Block, one with a weight and
 * a bias a plain conv, one with a weight only the resampling conv), so the diffusers config
 * (num_decoder_blocks, block_out_channels) need not be read and both namings give the same lists. The
 * parameterless layers (the clamp, ReLU, Upsample) leave gaps in the indices and are implied by the kinds.
 *
 * No GroupNorm and 64 channels: a 512×512 decode is about 0.3 TFLOP of 3×3 convolutions, a tenth of the
 * SD VAE's, which is why it is the few-step decoder and the live preview.
 */
#include "sdgen/taesd.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sdgen/ops.h"
#include "sdgen/safetensors.h"

#define TAESD_MAX_SIDE 16384 /* pixels per side: bounds every size computed below */
#define TAESD_MAX_INDEX 256  /* layer indices (with the parameterless ones) */
#define TAESD_MAX_CH 4096

/* ---- opening: which naming each file uses ---- */

enum { TAESD_FILE_DIFFUSERS, TAESD_FILE_ORIG_DECODER, TAESD_FILE_ORIG_ENCODER };

typedef struct taesd_files {
    int kind[2];
} taesd_files;

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* The naming of one file from its header: diffusers ("decoder.layers.K.", "encoder.layers.K."), or the
 * original Decoder() (its first conv is "1.weight" [64, C, 3, 3]) or Encoder() ("0.weight" [64, 3, 3, 3]). */
static int classify(const char *path, int *kind, sd_err *err)
{
    sd_safetensors st;
    if (sd_st_open(&st, path, err)) return -1;
    int diffusers = 0;
    for (int i = 0; i < st.n_tensors && !diffusers; i++)
        diffusers = starts(st.tensors[i].name, "decoder.layers.") || starts(st.tensors[i].name, "encoder.layers.");
    const int has0 = sd_name_index_find(&st.index, "0.weight") >= 0;
    const int has1 = sd_name_index_find(&st.index, "1.weight") >= 0;
    sd_st_close(&st);
    if (diffusers) *kind = TAESD_FILE_DIFFUSERS;
    else if (has0) *kind = TAESD_FILE_ORIG_ENCODER;
    else if (has1) *kind = TAESD_FILE_ORIG_DECODER;
    else
        return sd_errf(err, "%s: not a TAESD file (no decoder.layers.* / encoder.layers.* tensors, nor the original "
                       "taesd_decoder / taesd_encoder keys 1.weight / 0.weight)", path);
    return 0;
}

/* Original names to diffusers names: decoder "<K+1>.rest" -> "decoder.layers.K.rest" (the original's
 * layer 0 is the clamp, which diffusers does in forward()), encoder "K.rest" -> "encoder.layers.K.rest". */
static int taesd_rename(void *user, int file, const char *name, char *out, size_t n)
{
    const taesd_files *f = user;
    if (f->kind[file] == TAESD_FILE_DIFFUSERS) {
        if (!starts(name, "decoder.layers.") && !starts(name, "encoder.layers.")) return 0;
        snprintf(out, n, "%s", name);
        return 1;
    }
    char *end = NULL;
    const long k = strtol(name, &end, 10);
    if (end == name || *end != '.' || k < 0 || k >= TAESD_MAX_INDEX) return 0;
    if (f->kind[file] == TAESD_FILE_ORIG_DECODER) {
        if (k < 1) return 0;
        snprintf(out, n, "decoder.layers.%ld%s", k - 1, end);
    } else {
        snprintf(out, n, "encoder.layers.%ld%s", k, end);
    }
    return 1;
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The file beside `path` whose base name has `to` in place of the last `from`; 0 when there is none. */
static int sibling(const char *path, const char *from, const char *to, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path, *hit = NULL;
    for (const char *p = strstr(base, from); p; p = strstr(p + 1, from)) hit = p;
    if (!hit) return 0;
    int w = snprintf(out, n, "%.*s%s%s", (int)(hit - path), path, to, hit + strlen(from));
    return w > 0 && (size_t)w < n && is_file(out);
}

int sd_taesd_open(sd_taesd *t, const char *path, sd_err *err)
{
    memset(t, 0, sizeof *t);
    char file[4096], other[4096];
    const char *paths[2] = {file, other};
    int n_files = 1;
    taesd_files kinds = {{0, 0}};
    if (is_dir(path)) {
        /* diffusers save_pretrained of AutoencoderTiny */
        snprintf(file, sizeof file, "%s/diffusion_pytorch_model.safetensors", path);
        if (!is_file(file)) {
            snprintf(other, sizeof other, "%s/diffusion_pytorch_model.bin", path);
            if (is_file(other))
                return sd_errf(err, "%s: only a PyTorch .bin file was found; sdgen reads .safetensors (convert it first)",
                               other);
            return sd_errf(err, "%s: not a TAESD folder (no diffusion_pytorch_model.safetensors)", path);
        }
    } else {
        if (snprintf(file, sizeof file, "%s", path) >= (int)sizeof file) return sd_errf(err, "%s: path too long", path);
    }
    if (classify(file, &kinds.kind[0], err)) return -1;
    if (kinds.kind[0] == TAESD_FILE_ORIG_DECODER && sibling(file, "decoder", "encoder", other, sizeof other)) {
        if (classify(other, &kinds.kind[1], err)) return -1;
        if (kinds.kind[1] == TAESD_FILE_ORIG_ENCODER) n_files = 2; /* else: not its encoder, left alone */
    } else if (kinds.kind[0] == TAESD_FILE_ORIG_ENCODER) {
        /* an encoder alone cannot preview or decode: take the decoder beside it, as the first file */
        if (!sibling(file, "encoder", "decoder", other, sizeof other))
            return sd_errf(err, "%s: this is a TAESD encoder; give the decoder (taesd_decoder.safetensors)", file);
        char tmp[4096];
        memcpy(tmp, file, sizeof tmp);
        memcpy(file, other, sizeof file);
        memcpy(other, tmp, sizeof other);
        kinds.kind[1] = TAESD_FILE_ORIG_ENCODER;
        if (classify(file, &kinds.kind[0], err)) return -1;
        if (kinds.kind[0] != TAESD_FILE_ORIG_DECODER)
            return sd_errf(err, "%s: expected a TAESD decoder beside the encoder %s", file, other);
        n_files = 2;
    }
    if (sd_model_open_table(&t->m, path, n_files, paths, taesd_rename, &kinds, err)) return -1;
    if (sd_taesd_derive(t, err) || sd_taesd_check(t, err)) {
        sd_taesd_close(t);
        return -1;
    }
    return 0;
}

void sd_taesd_close(sd_taesd *t)
{
    sd_model_close(&t->m);
    memset(t, 0, sizeof *t);
}

/* ---- the architecture, from the tensors ---- */

static int derive_coder(sd_taesd *t, const char *coder, int decoder, sd_taesd_coder *c, sd_err *err)
{
    const sd_model *m = &t->m;
    memset(c, 0, sizeof *c);
    char pre[64];
    snprintf(pre, sizeof pre, "%s.layers.", coder);
    int max_k = -1;
    for (int i = 0; i < m->n_weights; i++) {
        const char *nm = m->weights[i].name;
        if (!starts(nm, pre)) continue;
        char *end = NULL;
        const long k = strtol(nm + strlen(pre), &end, 10);
        if (end == nm + strlen(pre) || *end != '.' || k < 0 || k >= TAESD_MAX_INDEX)
            return sd_errf(err, "%s: tensor \"%s\": expected %s<index>.* with an index below %d", m->path, nm, pre,
                           TAESD_MAX_INDEX);
        if (k > max_k) max_k = (int)k;
    }
    if (max_k < 0) return 0; /* this half is absent */
    int resample = 0;
    for (int k = 0; k <= max_k; k++) {
        sd_taesd_layer L = {0};
        L.index = k;
        if (sd_model_has(m, "%s%d.conv.0.weight", pre, k)) {
            if (sd_model_has(m, "%s%d.skip.weight", pre, k))
                return sd_errf(err, "%s: %s%d has a 1x1 skip convolution (a Block that changes width): not supported",
                               m->path, pre, k);
            L.op = SD_TAESD_BLOCK;
            L.cin = (int)sd_model_dim(m, 1, "%s%d.conv.0.weight", pre, k);
            L.cout = (int)sd_model_dim(m, 0, "%s%d.conv.0.weight", pre, k);
        } else if (sd_model_has(m, "%s%d.weight", pre, k)) {
            L.op = sd_model_has(m, "%s%d.bias", pre, k) ? SD_TAESD_CONV
                   : decoder                          ? SD_TAESD_UP_CONV
                                                      : SD_TAESD_DOWN_CONV;
            L.cin = (int)sd_model_dim(m, 1, "%s%d.weight", pre, k);
            L.cout = (int)sd_model_dim(m, 0, "%s%d.weight", pre, k);
        } else {
            continue; /* a layer without weights */
        }
        if (c->n == SD_TAESD_MAX_LAYERS)
            return sd_errf(err, "%s: the %s has more than %d layers with weights", m->path, coder, SD_TAESD_MAX_LAYERS);
        if (L.cin < 1 || L.cin > TAESD_MAX_CH || L.cout < 1 || L.cout > TAESD_MAX_CH)
            return sd_errf(err, "%s: %s%d: unsupported width %d -> %d", m->path, pre, k, L.cin, L.cout);
        if (L.op == SD_TAESD_UP_CONV || L.op == SD_TAESD_DOWN_CONV) resample++;
        c->layer[c->n++] = L;
    }
    if (c->n < 2 || c->layer[0].op != SD_TAESD_CONV || c->layer[c->n - 1].op != SD_TAESD_CONV)
        return sd_errf(err, "%s: the %s's layers do not start and end with a convolution with bias (not a TAESD %s)",
                       m->path, coder, coder);
    for (int i = 1; i < c->n - 1; i++)
        if (c->layer[i].op == SD_TAESD_CONV)
            return sd_errf(err, "%s: %s%d: a convolution with bias inside the %s (not a TAESD layout)", m->path, pre,
                           c->layer[i].index, coder);
    if (resample > 6) return sd_errf(err, "%s: the %s resamples %d times (at most 6)", m->path, coder, resample);
    c->factor = 1 << resample;
    return 0;
}

int sd_taesd_derive(sd_taesd *t, sd_err *err)
{
    if (derive_coder(t, "decoder", 1, &t->dec, err) || derive_coder(t, "encoder", 0, &t->enc, err)) return -1;
    if (!t->dec.n) return sd_errf(err, "%s: no TAESD decoder (decoder.layers.*) in it", t->m.path);
    t->latent_channels = t->dec.layer[0].cin;
    t->image_channels = t->dec.layer[t->dec.n - 1].cout;
    if (t->image_channels != 3)
        return sd_errf(err, "%s: the TAESD decoder makes %d channels, expected 3 (RGB)", t->m.path, t->image_channels);
    if (t->latent_channels > 64)
        return sd_errf(err, "%s: %d latent channels (at most 64)", t->m.path, t->latent_channels);
    if (t->enc.n) {
        const int ec = t->enc.layer[t->enc.n - 1].cout, ei = t->enc.layer[0].cin;
        if (ec != t->latent_channels || ei != 3 || t->enc.factor != t->dec.factor)
            return sd_errf(err, "%s: the TAESD encoder (%d -> %d channels, factor %d) does not match the decoder "
                           "(%d -> 3, factor %d)", t->m.path, ei, ec, t->enc.factor, t->latent_channels, t->dec.factor);
    }
    return 0;
}

/* "<pre><suffix>" exists with shape d[0..ndim): else the first failure goes to err, naming the file, the
 * tensor as stored (and its diffusers name when the file uses the original one), its shape and the expected. */
static int check_shape(const sd_taesd *t, const char *pre, const char *suffix, int ndim, const int64_t *d, sd_err *err)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", pre, suffix);
    const sd_weight_ref *w = sd_model_find(&t->m, name);
    if (!w) return sd_errf(err, "%s: required tensor \"%s\" is missing (TAESD)", t->m.path, name);
    int ok = w->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = w->shape[i] == d[i];
    if (ok) return 0;
    char want[96] = "", got[96] = "", alias[200] = "";
    for (int i = 0, n = 0; i < ndim; i++)
        n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", i ? "," : "", (long long)d[i]);
    for (int i = 0, n = 0; i < w->ndim; i++)
        n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? "," : "", (long long)w->shape[i]);
    const sd_safetensors *st = &t->m.files[w->file];
    const char *stored = st->tensors[w->index].name;
    if (strcmp(stored, name)) snprintf(alias, sizeof alias, " (%s)", name);
    return sd_errf(err, "%s: tensor \"%s\"%s has shape [%s], expected [%s]", st->path, stored, alias, got, want);
}

static int check_coder(const sd_taesd *t, const char *coder, const sd_taesd_coder *c, sd_err *err)
{
    char pre[96];
    int64_t cin = c->layer[0].cin;
    for (int i = 0; i < c->n; i++) {
        const sd_taesd_layer *L = &c->layer[i];
        snprintf(pre, sizeof pre, "%s.layers.%d.", coder, L->index);
        if (L->op == SD_TAESD_BLOCK) {
            static const char *const convs[3] = {"conv.0.", "conv.2.", "conv.4."};
            for (int j = 0; j < 3; j++) {
                char p[128];
                const int64_t dw[4] = {cin, cin, 3, 3}, db[1] = {cin};
                snprintf(p, sizeof p, "%s%s", pre, convs[j]);
                if (check_shape(t, p, "weight", 4, dw, err) || check_shape(t, p, "bias", 1, db, err)) return -1;
            }
        } else {
            const int64_t dw[4] = {L->cout, cin, 3, 3}, db[1] = {L->cout};
            if (check_shape(t, pre, "weight", 4, dw, err)) return -1;
            if (L->op == SD_TAESD_CONV && check_shape(t, pre, "bias", 1, db, err)) return -1;
            cin = L->cout;
        }
    }
    return 0;
}

int sd_taesd_check(const sd_taesd *t, sd_err *err)
{
    if (check_coder(t, "decoder", &t->dec, err)) return -1;
    return t->enc.n ? check_coder(t, "encoder", &t->enc, err) : 0;
}

/* ---- work and memory ---- */

static double conv_flops(double cin, double cout, double h, double w) { return 2 * cin * cout * 9 * h * w; }

static double coder_flops(const sd_taesd_coder *c, double h, double w)
{
    double f = 0;
    for (int i = 0; i < c->n; i++) {
        const sd_taesd_layer *L = &c->layer[i];
        if (L->op == SD_TAESD_UP_CONV) h *= 2, w *= 2;
        if (L->op == SD_TAESD_DOWN_CONV) h /= 2, w /= 2;
        f += (L->op == SD_TAESD_BLOCK ? 3 : 1) * conv_flops(L->cin, L->cout, h, w);
    }
    return f;
}

double sd_taesd_decode_flops(const sd_taesd *t, int64_t h, int64_t w)
{
    return coder_flops(&t->dec, (double)h, (double)w);
}

double sd_taesd_encode_flops(const sd_taesd *t, int64_t h, int64_t w)
{
    return coder_flops(&t->enc, (double)(h * t->enc.factor), (double)(w * t->enc.factor));
}

static int64_t widest(const sd_taesd_coder *c)
{
    int64_t m = 3;
    for (int i = 0; i < c->n; i++) {
        if (c->layer[i].cin > m) m = c->layer[i].cin;
        if (c->layer[i].cout > m) m = c->layer[i].cout;
    }
    return m;
}

/* Floats alive at the worst moment at R pixels of width C: a Block holds its input, its three conv outputs
 * and the convolution's scratch (an im2col band of at most 8 Mi floats but one output row, or the
 * Winograd tiles, bounded alike); an upsample holds x, the ×2 copy and the conv's output. */
static int64_t peak_at(int64_t C, int64_t H, int64_t W)
{
    const int64_t band = (int64_t)9 * C * W, col = band > ((int64_t)8 << 20) ? band : ((int64_t)8 << 20);
    return 4 * C * H * W + 2 * col;
}

size_t sd_taesd_decode_bytes(const sd_taesd *t, int64_t n, int64_t h, int64_t w)
{
    const int64_t f = t->dec.factor;
    if (!t->dec.n || n < 1 || n > 4096 || h < 1 || w < 1 || h * f > TAESD_MAX_SIDE || w * f > TAESD_MAX_SIDE) return 0;
    const int64_t H = h * f, W = w * f;
    return (size_t)(peak_at(widest(&t->dec), H, W) + 3 * n * H * W + 2 * t->latent_channels * h * w) * sizeof(float) +
           ((size_t)8 << 20);
}

size_t sd_taesd_encode_bytes(const sd_taesd *t, int64_t n, int64_t H, int64_t W)
{
    const int64_t f = t->enc.factor;
    if (!t->enc.n || n < 1 || n > 4096 || H < f || W < f || H % f || W % f || H > TAESD_MAX_SIDE || W > TAESD_MAX_SIDE)
        return 0;
    return (size_t)(peak_at(widest(&t->enc), H, W) + 3 * H * W + t->latent_channels * n * (H / f) * (W / f)) *
               sizeof(float) + ((size_t)8 << 20);
}

/* ---- layers ---- */

typedef struct taesd_ctx {
    sd_taesd *t;
    sd_arena *a;
    sd_err *err;
    const char *coder;
} taesd_ctx;

/* The convolutions' ReLU and the Block's skip sum with its fuse ReLU run as the convolution's epilogue
 * (sd_conv2d_ae, which is sd_conv2d_ep allowed Winograd F(4×4, 3×3)): the same float32 operations, on
 * each band of output rows while it is in cache. */
static const sd_conv_epilogue relu_after = {NULL, 1};

/* Weight [cout, cin, 3, 3] of "<coder>.layers.<k>.<part>weight" and, when b is non-NULL, its bias [cout]. */
static int conv_w(taesd_ctx *c, int k, const char *part, int64_t cout, int64_t cin, sd_tensor *w, sd_tensor *b)
{
    char name[160];
    const int64_t dw[4] = {cout, cin, 3, 3}, db[1] = {cout};
    snprintf(name, sizeof name, "%s.layers.%d.%sweight", c->coder, k, part);
    if (sd_model_weight_shaped(&c->t->m, c->a, name, 4, dw, w, c->err)) return -1;
    if (!b) return 0;
    snprintf(name, sizeof name, "%s.layers.%d.%sbias", c->coder, k, part);
    return sd_model_weight_shaped(&c->t->m, c->a, name, 1, db, b, c->err);
}

/* AutoencoderTinyBlock with an identity skip. Its three outputs stay where they are made, after x, in
 * the caller's scope, which keeps the last: one move of the result down to the scope's start per Block
 * instead of three (peak_at counts the four tensors; the moves are memory traffic, ~10 % of a 512×512
 * decode when every conv output was moved). */
static int block(taesd_ctx *c, int k, sd_tensor x, sd_tensor *out)
{
    const int64_t C = x.ne[1];
    sd_tensor w, b;
    if (conv_w(c, k, "conv.0.", C, C, &w, &b)) return -1;
    sd_tensor h = sd_conv2d_ae(c->a, x, &w, &b, 1, 1, &relu_after);
    if (conv_w(c, k, "conv.2.", C, C, &w, &b)) return -1;
    h = sd_conv2d_ae(c->a, h, &w, &b, 1, 1, &relu_after);
    if (conv_w(c, k, "conv.4.", C, C, &w, &b)) return -1;
    const sd_conv_epilogue fuse = {x.data, 1}; /* self.fuse(self.conv(x) + self.skip(x)) */
    *out = sd_conv2d_ae(c->a, h, &w, &b, 1, 1, &fuse);
    return 0;
}

/* The layer list on one item x [1, cin, h, w]; the result is allocated last. */
static int run_coder(taesd_ctx *c, const sd_taesd_coder *cd, int relu_first, sd_tensor x, sd_tensor *out)
{
    sd_scope s = sd_scope_open(c->a);
    for (int i = 0; i < cd->n; i++) {
        const sd_taesd_layer *L = &cd->layer[i];
        sd_tensor w, b, y;
        switch (L->op) {
        case SD_TAESD_BLOCK:
            if (block(c, L->index, x, &y)) return -1;
            break;
        case SD_TAESD_CONV:
            if (conv_w(c, L->index, "", L->cout, L->cin, &w, &b)) return -1;
            y = sd_conv2d_ae(c->a, x, &w, &b, 1, 1, i == 0 && relu_first ? &relu_after : NULL);
            break;
        case SD_TAESD_UP_CONV: {
            if (conv_w(c, L->index, "", L->cout, L->cin, &w, NULL)) return -1;
            sd_tensor u = sd_upsample2x(c->a, x); /* nn.Upsample(scale_factor=2), mode "nearest" */
            y = sd_conv2d_ae(c->a, u, &w, NULL, 1, 1, NULL);
            break;
        }
        default: /* SD_TAESD_DOWN_CONV */
            if (conv_w(c, L->index, "", L->cout, L->cin, &w, NULL)) return -1;
            y = sd_conv2d(c->a, x, &w, NULL, 2, 1);
            break;
        }
        x = sd_scope_keep(c->a, s, y);
    }
    *out = x;
    return 0;
}

void sd_taesd_soft_clamp(const float *z, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        volatile float q = z[i] / 3.0f; /* torch.tanh(x / 3) * 3: three float32 operations */
        volatile float th = tanhf(q);
        out[i] = th * 3.0f;
    }
}

/* Runs fn's coder item by item under an out-of-memory guard; res [n, oc, oh, ow] holds the items. */
static int run_items(taesd_ctx *c, const sd_taesd_coder *cd, int relu_first, sd_tensor x, size_t reserve, int64_t oc,
                     int64_t oh, int64_t ow, sd_tensor *res, const char *what)
{
    sd_arena *a = c->a;
    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        return sd_errcf(c->err, SD_ERR_NOMEM, "taesd %s: out of memory for %lldx%lld", what, (long long)x.ne[3],
                        (long long)x.ne[2]);
    }
    a->guard = &jb;
    sd_arena_reserve(a, reserve);
    const int64_t n = x.ne[0], per = oc * oh * ow;
    sd_tensor r = sd_tensor_4d(a, n, oc, oh, ow);
    for (int64_t i = 0; i < n; i++) {
        sd_scope s = sd_scope_open(a);
        sd_tensor one;
        if (run_coder(c, cd, relu_first, sd_tensor_slice0(x, i, 1), &one)) {
            a->guard = prev;
            return sd_err_prefix(c->err, "taesd %s", what);
        }
        memcpy(r.data + i * per, one.data, (size_t)per * sizeof(float));
        sd_scope_close(a, s);
    }
    a->guard = prev;
    *res = r;
    return 0;
}

static int check_latent(const sd_taesd *t, sd_tensor z, sd_err *err)
{
    const int64_t f = t->dec.factor;
    char sh[96];
    if (z.ndim != 4 || z.ne[1] != t->latent_channels || z.ne[0] < 1 || z.ne[0] > 4096 || z.ne[2] < 1 || z.ne[3] < 1 ||
        z.ne[2] * f > TAESD_MAX_SIDE || z.ne[3] * f > TAESD_MAX_SIDE)
        return sd_errf(err, "taesd decode: latent has shape %s, expected [n,%d,h,w] with h,w <= %lld",
                       sd_shape_str(z, sh, sizeof sh), t->latent_channels, (long long)(TAESD_MAX_SIDE / f));
    return 0;
}

int sd_taesd_decode_layers(sd_taesd *t, sd_arena *a, sd_tensor zc, sd_tensor *raw, sd_err *err)
{
    if (check_latent(t, zc, err)) return -1;
    const int64_t f = t->dec.factor;
    taesd_ctx c = {t, a, err, "decoder"};
    return run_items(&c, &t->dec, 1, zc, sd_taesd_decode_bytes(t, zc.ne[0], zc.ne[2], zc.ne[3]), 3, zc.ne[2] * f,
                     zc.ne[3] * f, raw, "decode");
}

int sd_taesd_decode(sd_taesd *t, sd_arena *a, sd_tensor z, sd_tensor *img, sd_err *err)
{
    if (check_latent(t, z, err)) return -1;
    sd_tensor zc = sd_tensor_new(a, 4, z.ne);
    if (!zc.data) return sd_errcf(err, SD_ERR_NOMEM, "taesd decode: out of memory for the latent");
    sd_taesd_soft_clamp(z.data, zc.data, sd_numel(z));
    if (sd_taesd_decode_layers(t, a, zc, img, err)) return -1;
    sd_taesd_raw_to_image(img->data, sd_numel(*img));
    return 0;
}

void sd_taesd_raw_to_image(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        volatile float two = x[i] * 2.0f;
        x[i] = two - 1.0f;
    }
}

int sd_taesd_encode(sd_taesd *t, sd_arena *a, sd_tensor img, sd_tensor *latents, sd_err *err)
{
    char sh[96];
    if (!t->enc.n) return sd_errf(err, "%s: this TAESD has no encoder", t->m.path);
    const int64_t f = t->enc.factor;
    if (img.ndim != 4 || img.ne[1] != 3 || img.ne[0] < 1 || img.ne[0] > 4096 || img.ne[2] < f || img.ne[3] < f ||
        img.ne[2] % f || img.ne[3] % f || img.ne[2] > TAESD_MAX_SIDE || img.ne[3] > TAESD_MAX_SIDE)
        return sd_errf(err, "taesd encode: image has shape %s, expected [n,3,H,W] with H,W multiples of %lld, <= %d",
                       sd_shape_str(img, sh, sizeof sh), (long long)f, TAESD_MAX_SIDE);
    sd_tensor x = sd_tensor_new(a, 4, img.ne);
    if (!x.data) return sd_errcf(err, SD_ERR_NOMEM, "taesd encode: out of memory for the image");
    /* EncoderTiny: self.layers(x.add(1).div(2)) */
    const int64_t n = sd_numel(img);
    for (int64_t i = 0; i < n; i++) {
        volatile float s = img.data[i] + 1.0f;
        x.data[i] = s / 2.0f;
    }
    taesd_ctx c = {t, a, err, "encoder"};
    return run_items(&c, &t->enc, 0, x, sd_taesd_encode_bytes(t, img.ne[0], img.ne[2], img.ne[3]), t->latent_channels,
                     img.ne[2] / f, img.ne[3] / f, latents, "encode");
}

/* ---- AUTOMATIC1111 "Approx cheap" ---- */

void sd_latent_preview_cheap(const float *z, int64_t h, int64_t w, int sdxl, float *rgb)
{
    /* modules/sd_vae_approx.py cheap_approximation: rows are the latent channels, columns R, G, B
     * (torch.einsum("...lxy,lr -> ...rxy")); the SD 1.x/2.x table and the SDXL one. */
    static const float sd[4][3] = {
        {0.298f, 0.207f, 0.208f}, {0.187f, 0.286f, 0.173f}, {-0.158f, 0.189f, 0.264f}, {-0.184f, -0.271f, -0.473f}};
    static const float xl[4][3] = {{0.3448f, 0.4168f, 0.4395f},
                                   {-0.1953f, -0.0290f, 0.0250f},
                                   {0.1074f, 0.0886f, -0.0163f},
                                   {-0.3730f, -0.2499f, -0.2088f}};
    const float(*k)[3] = sdxl ? xl : sd;
    const int64_t P = h * w;
    for (int c = 0; c < 3; c++)
        for (int64_t p = 0; p < P; p++) {
            float acc = 0.0f;
            for (int l = 0; l < 4; l++) acc += z[l * P + p] * k[l][c];
            rgb[c * P + p] = acc;
        }
}
