/* model.c — open a Stable Diffusion model (single LDM file or diffusers folder), work out
 * its architecture, check every tensor the architecture needs, and serve f32 weights.
 *
 * Architecture rules (the original CompVis/Stability configs, v1-inference.yaml and
 * v2-inference-v.yaml): the U-Net's levels, widths, res blocks and attention placement
 * follow from tensor shapes; what shapes can't tell comes from the family:
 *   SD 1.x: U-Net 8 heads everywhere, CLIP ViT-L/14 text (head width 64, quick_gelu, last layer);
 *   SD 2.x: U-Net head width 64, linear proj_in/out, OpenCLIP ViT-H text (head width 64,
 *           GELU, penultimate layer), v-prediction for the common 768-v file.
 * A diffusers folder's config.json files take precedence over these rules.
 */
#include "sdgen/model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffusers.h"

const char *sd_family_name(sd_family f)
{
    switch (f) {
    case SD_FAMILY_SD1: return "sd1";
    case SD_FAMILY_SD2: return "sd2";
    case SD_FAMILY_SDXL: return "sdxl";
    default: return "unknown";
    }
}

const char *sd_prediction_name(sd_prediction p)
{
    return p == SD_PRED_EPS ? "eps" : p == SD_PRED_V ? "v" : "unknown";
}

/* ---- weight table ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const sd_weight_ref *sd_model_find(const sd_model *m, const char *name)
{
    if (!m->hash) return NULL;
    uint64_t h = hash_str(name);
    for (int i = 0; i < m->hash_cap; i++) {
        int idx = m->hash[(h + (uint64_t)i) & (uint64_t)(m->hash_cap - 1)];
        if (idx < 0) return NULL;
        if (!strcmp(m->weights[idx].name, name)) return &m->weights[idx];
    }
    return NULL;
}

/* The stored tensor behind a reference, or NULL when the reference points nowhere valid. */
static const sd_st_tensor *stored(const sd_model *m, const sd_weight_ref *r, const sd_safetensors **file)
{
    if (!r || r->file < 0 || r->file >= m->n_files) return NULL;
    const sd_safetensors *st = &m->files[r->file];
    if (r->index < 0 || r->index >= st->n_tensors) return NULL;
    if (file) *file = st;
    return &st->tensors[r->index];
}

const uint16_t *sd_model_weight_f16(const sd_model *m, const char *name, sd_tensor *shape)
{
    const sd_weight_ref *r = sd_model_find(m, name);
    const sd_safetensors *st = NULL;
    const sd_st_tensor *t = stored(m, r, &st);
    if (!t || r->f32 || r->ndim > SD_MAX_DIMS || t->dtype != SD_DT_F16 || t->numel <= 0) return NULL;
    const uint16_t *src = sd_st_data(st, t);
    if ((uintptr_t)src & 1) return NULL; /* safetensors does not promise alignment: leave it to the copy path */
    memset(shape, 0, sizeof *shape);
    shape->ndim = r->ndim ? r->ndim : 1;
    for (int d = 0; d < SD_MAX_DIMS; d++) shape->ne[d] = d < r->ndim ? r->shape[d] : 1;
    return src;
}

int64_t sd_model_max_f16_numel(const sd_model *m, const char *prefix)
{
    const size_t np = strlen(prefix);
    int64_t best = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *r = &m->weights[i];
        if (strncmp(r->name, prefix, np)) continue;
        const sd_st_tensor *t = stored(m, r, NULL);
        if (t && t->dtype == SD_DT_F16 && t->numel > best) best = t->numel;
    }
    return best;
}

static int has(const sd_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int has(const sd_model *m, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_model_find(m, name) != NULL;
}

/* Dimension d of a tensor, or -1 if absent / too few dims. */
static int64_t dim(const sd_model *m, int d, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int64_t dim(const sd_model *m, int d, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sd_weight_ref *w = sd_model_find(m, name);
    if (!w || d >= w->ndim) return -1;
    return w->shape[d];
}

static int add_weight(sd_model *m, const char *name, int file, int index, const sd_st_tensor *t, int to_conv, int *cap,
                      sd_err *err)
{
    if (m->n_weights == *cap) {
        int nc = *cap ? *cap * 2 : 1024;
        sd_weight_ref *nw = realloc(m->weights, (size_t)nc * sizeof *nw);
        if (!nw) return sd_errcf(err, SD_EXIT_OOM, "%s: out of memory", m->path);
        m->weights = nw;
        *cap = nc;
    }
    sd_weight_ref *w = &m->weights[m->n_weights];
    memset(w, 0, sizeof *w);
    w->name = strdup(name);
    if (!w->name) return sd_errcf(err, SD_EXIT_OOM, "%s: out of memory", m->path);
    w->file = file;
    w->index = index;
    w->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) w->shape[d] = t->shape[d];
    if (to_conv && t->ndim == 2) {
        w->ndim = 4;
        w->shape[2] = w->shape[3] = 1;
    }
    m->n_weights++;
    return 0;
}

static int build_hash(sd_model *m, sd_err *err)
{
    m->hash_cap = 16;
    while (m->hash_cap < 2 * m->n_weights) m->hash_cap *= 2;
    m->hash = malloc((size_t)m->hash_cap * sizeof(int));
    if (!m->hash) return sd_errcf(err, SD_EXIT_OOM, "%s: out of memory", m->path);
    for (int i = 0; i < m->hash_cap; i++) m->hash[i] = -1;
    for (int k = 0; k < m->n_weights; k++) {
        uint64_t h = hash_str(m->weights[k].name);
        for (int i = 0; i < m->hash_cap; i++) {
            int *slot = &m->hash[(h + (uint64_t)i) & (uint64_t)(m->hash_cap - 1)];
            if (*slot < 0) {
                *slot = k;
                break;
            }
            if (!strcmp(m->weights[*slot].name, m->weights[k].name))
                return sd_errf(err, "%s: tensor \"%s\" appears twice", m->path, m->weights[k].name);
        }
    }
    return 0;
}

/* ---- architecture from shapes (single-file LDM) ---- */

static int derive_unet(sd_model *m, sd_err *err)
{
    sd_unet_config *c = &m->unet;
    memset(c, 0, sizeof *c);
    const char *P = SD_PREFIX_UNET;
    int64_t mc = dim(m, 0, "%sinput_blocks.0.0.weight", P);
    int64_t in = dim(m, 1, "%sinput_blocks.0.0.weight", P);
    int64_t ted = dim(m, 0, "%stime_embed.0.weight", P);
    int64_t out = dim(m, 0, "%sout.2.weight", P);
    if (mc <= 0 || in <= 0 || ted <= 0 || out <= 0)
        return sd_errf(err, "%s: U-Net is missing input_blocks.0.0, time_embed.0 or out.2 weights", m->path);
    c->model_channels = (int)mc;
    c->in_channels = (int)in;
    c->out_channels = (int)out;
    c->time_embed_dim = (int)ted;
    c->groups = 32;
    int nrb = 0;
    while (nrb < 16 && has(m, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + nrb)) nrb++;
    if (nrb == 0) return sd_errf(err, "%s: U-Net has no res block in input_blocks.1", m->path);
    c->num_res_blocks = nrb;
    int levels = 0;
    while (levels < SD_MAX_LEVELS && has(m, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + levels * (nrb + 1))) {
        int64_t ch = dim(m, 0, "%sinput_blocks.%d.0.in_layers.2.weight", P, 1 + levels * (nrb + 1));
        if (ch % mc) return sd_errf(err, "%s: U-Net level %d width %lld is not a multiple of %lld", m->path, levels,
                                    (long long)ch, (long long)mc);
        c->channel_mult[levels] = (int)(ch / mc);
        c->attn[levels] = has(m, "%sinput_blocks.%d.1.norm.weight", P, 1 + levels * (nrb + 1));
        levels++;
        if (!has(m, "%sinput_blocks.%d.0.op.weight", P, levels * (nrb + 1))) break;
    }
    c->n_levels = levels;
    c->mid_attn = has(m, "%smiddle_block.1.norm.weight", P);
    /* context width, projection kind and depth from the first transformer found */
    char tp[256] = "";
    for (int l = 0; l < levels && !tp[0]; l++)
        if (c->attn[l]) snprintf(tp, sizeof tp, "%sinput_blocks.%d.1.", P, 1 + l * (nrb + 1));
    if (!tp[0] && c->mid_attn) snprintf(tp, sizeof tp, "%smiddle_block.1.", P);
    if (tp[0]) {
        c->context_dim = (int)dim(m, 1, "%stransformer_blocks.0.attn2.to_k.weight", tp);
        const sd_weight_ref *pi = NULL;
        char name[300];
        snprintf(name, sizeof name, "%sproj_in.weight", tp);
        pi = sd_model_find(m, name);
        c->linear_proj = pi && pi->ndim == 2;
        int depth = 0;
        while (depth < 64 && has(m, "%stransformer_blocks.%d.norm1.weight", tp, depth)) depth++;
        c->transformer_depth = depth;
        if (c->context_dim <= 0 || depth == 0)
            return sd_errf(err, "%s: U-Net transformer block %s is incomplete", m->path, tp);
    }
    m->has_unet = 1;
    return 0;
}

static int derive_vae(sd_model *m, sd_err *err)
{
    sd_vae_config *c = &m->vae;
    memset(c, 0, sizeof *c);
    const char *P = SD_PREFIX_VAE;
    c->has_encoder = has(m, "%sencoder.conv_in.weight", P);
    c->has_decoder = has(m, "%sdecoder.conv_in.weight", P);
    c->groups = 32;
    c->scale_factor = 0.18215f; /* SD 1.x/2.x v1-inference.yaml scale_factor */
    int levels = 0;
    if (c->has_encoder) {
        c->ch = (int)dim(m, 0, "%sencoder.conv_in.weight", P);
        c->in_channels = (int)dim(m, 1, "%sencoder.conv_in.weight", P);
        c->z_channels = (int)(dim(m, 0, "%sencoder.conv_out.weight", P) / 2);
        while (levels < SD_MAX_LEVELS && has(m, "%sencoder.down.%d.block.0.conv1.weight", P, levels)) levels++;
        int nrb = 0;
        while (nrb < 16 && has(m, "%sencoder.down.0.block.%d.conv1.weight", P, nrb)) nrb++;
        c->num_res_blocks = nrb;
        for (int l = 0; l < levels; l++)
            c->ch_mult[l] = c->ch > 0 ? (int)(dim(m, 0, "%sencoder.down.%d.block.0.conv2.weight", P, l) / c->ch) : 0;
    }
    if (c->has_decoder) {
        int64_t ch = dim(m, 1, "%sdecoder.conv_out.weight", P);
        int dl = 0;
        while (dl < SD_MAX_LEVELS && has(m, "%sdecoder.up.%d.block.0.conv1.weight", P, dl)) dl++;
        int nrb = 0;
        while (nrb < 16 && has(m, "%sdecoder.up.0.block.%d.conv1.weight", P, nrb)) nrb++;
        if (!c->has_encoder) {
            c->ch = (int)ch;
            c->in_channels = (int)dim(m, 0, "%sdecoder.conv_out.weight", P);
            c->z_channels = (int)dim(m, 1, "%sdecoder.conv_in.weight", P);
            c->num_res_blocks = nrb - 1;
            levels = dl;
            for (int l = 0; l < levels; l++)
                c->ch_mult[l] = ch > 0 ? (int)(dim(m, 0, "%sdecoder.up.%d.block.0.conv2.weight", P, l) / ch) : 0;
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

static int derive_text(sd_model *m, sd_err *err)
{
    sd_text_config *c = &m->text;
    memset(c, 0, sizeof *c);
    if (m->family == SD_FAMILY_SD1) {
        const char *P = SD_PREFIX_CLIP;
        c->kind = SD_TEXT_CLIP_HF;
        c->vocab = (int)dim(m, 0, "%sembeddings.token_embedding.weight", P);
        c->width = (int)dim(m, 1, "%sembeddings.token_embedding.weight", P);
        c->positions = (int)dim(m, 0, "%sembeddings.position_embedding.weight", P);
        while (c->layers < 1024 && has(m, "%sencoder.layers.%d.layer_norm1.weight", P, c->layers)) c->layers++;
        c->mlp = (int)dim(m, 0, "%sencoder.layers.0.mlp.fc1.weight", P);
        c->act = SD_ACT_QUICK_GELU; /* OpenAI CLIP ViT-L/14 */
        c->layers_used = c->layers;
        c->pad_id = c->vocab - 1;   /* <|endoftext|>, 49407 for the OpenAI vocabulary */
    } else {
        const char *P = SD_PREFIX_OPENCLIP;
        c->kind = SD_TEXT_OPENCLIP;
        c->vocab = (int)dim(m, 0, "%stoken_embedding.weight", P);
        c->width = (int)dim(m, 1, "%stoken_embedding.weight", P);
        c->positions = (int)dim(m, 0, "%spositional_embedding", P);
        while (c->layers < 1024 && has(m, "%stransformer.resblocks.%d.ln_1.weight", P, c->layers)) c->layers++;
        c->mlp = (int)dim(m, 0, "%stransformer.resblocks.0.mlp.c_fc.weight", P);
        c->act = SD_ACT_GELU;
        /* FrozenOpenCLIPEmbedder(layer="penultimate"): the last block is skipped. */
        c->layers_used = c->layers - 1;
        c->pad_id = 0;
    }
    if (c->vocab <= 0 || c->width <= 0 || c->positions <= 0 || c->layers <= 0 || c->mlp <= 0 || c->layers_used <= 0)
        return sd_errf(err, "%s: cannot work out the text encoder's sizes from its tensors", m->path);
    /* Both CLIP text towers use 64-wide heads. */
    c->heads = c->width >= 64 ? c->width / 64 : 1;
    if (c->width % c->heads) return sd_errf(err, "%s: text width %d does not split into 64-wide heads", m->path, c->width);
    m->has_text = 1;
    return 0;
}

/* ---- required tensors and their shapes ---- */

typedef struct {
    sd_model *m;
    sd_err *err;
    int failed;
} checker;

static void need(checker *k, int ndim, const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void need(checker *k, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (k->failed) return;
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sd_weight_ref *w = sd_model_find(k->m, name);
    if (!w) {
        k->failed = 1;
        sd_errf(k->err, "%s: required tensor \"%s\" is missing (%s model)", k->m->path, name,
                sd_family_name(k->m->family));
        return;
    }
    int ok = w->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = w->shape[d] == shape[d];
    if (!ok) {
        char want[128] = "", got[128] = "";
        int n = 0;
        for (int d = 0; d < ndim; d++) n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", d ? "," : "", (long long)shape[d]);
        n = 0;
        for (int d = 0; d < w->ndim; d++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", d ? "," : "", (long long)w->shape[d]);
        k->failed = 1;
        sd_errf(k->err, "%s: tensor \"%s\" has shape [%s], expected [%s] for this %s model", k->m->path, name, got,
                want, sd_family_name(k->m->family));
    }
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define NEED(k, nd, shp, ...) need(k, nd, shp, __VA_ARGS__)

static void need_norm(checker *k, int64_t c, const char *pre)
{
    NEED(k, 1, S(c), "%sweight", pre);
    NEED(k, 1, S(c), "%sbias", pre);
}

static void need_unet_res(checker *k, const char *pre, int64_t cin, int64_t cout, int64_t ted)
{
    char p[512];
    snprintf(p, sizeof p, "%sin_layers.0.", pre);
    need_norm(k, cin, p);
    NEED(k, 4, S(cout, cin, 3, 3), "%sin_layers.2.weight", pre);
    NEED(k, 1, S(cout), "%sin_layers.2.bias", pre);
    NEED(k, 2, S(cout, ted), "%semb_layers.1.weight", pre);
    NEED(k, 1, S(cout), "%semb_layers.1.bias", pre);
    snprintf(p, sizeof p, "%sout_layers.0.", pre);
    need_norm(k, cout, p);
    NEED(k, 4, S(cout, cout, 3, 3), "%sout_layers.3.weight", pre);
    NEED(k, 1, S(cout), "%sout_layers.3.bias", pre);
    if (cin != cout) {
        NEED(k, 4, S(cout, cin, 1, 1), "%sskip_connection.weight", pre);
        NEED(k, 1, S(cout), "%sskip_connection.bias", pre);
    }
}

static void need_transformer(checker *k, const char *pre, int64_t c, const sd_unet_config *u)
{
    char p[512];
    snprintf(p, sizeof p, "%snorm.", pre);
    need_norm(k, c, p);
    for (int io = 0; io < 2; io++) {
        const char *which = io ? "proj_out" : "proj_in";
        if (u->linear_proj) NEED(k, 2, S(c, c), "%s%s.weight", pre, which);
        else NEED(k, 4, S(c, c, 1, 1), "%s%s.weight", pre, which);
        NEED(k, 1, S(c), "%s%s.bias", pre, which);
    }
    for (int d = 0; d < u->transformer_depth; d++) {
        char b[512];
        snprintf(b, sizeof b, "%stransformer_blocks.%d.", pre, d);
        for (int a = 1; a <= 2; a++) {
            int64_t kv = a == 1 ? c : u->context_dim;
            NEED(k, 2, S(c, c), "%sattn%d.to_q.weight", b, a);
            NEED(k, 2, S(c, kv), "%sattn%d.to_k.weight", b, a);
            NEED(k, 2, S(c, kv), "%sattn%d.to_v.weight", b, a);
            NEED(k, 2, S(c, c), "%sattn%d.to_out.0.weight", b, a);
            NEED(k, 1, S(c), "%sattn%d.to_out.0.bias", b, a);
        }
        NEED(k, 2, S(8 * c, c), "%sff.net.0.proj.weight", b); /* GEGLU: 2 × 4c */
        NEED(k, 1, S(8 * c), "%sff.net.0.proj.bias", b);
        NEED(k, 2, S(c, 4 * c), "%sff.net.2.weight", b);
        NEED(k, 1, S(c), "%sff.net.2.bias", b);
        for (int n = 1; n <= 3; n++) {
            snprintf(p, sizeof p, "%snorm%d.", b, n);
            need_norm(k, c, p);
        }
    }
    if (u->num_heads <= 0 && (u->head_dim <= 0 || c % u->head_dim)) {
        k->failed = 1;
        sd_errf(k->err, "%s: attention width %lld is not a multiple of the %d-wide heads", k->m->path, (long long)c,
                u->head_dim);
    } else if (u->num_heads > 0 && c % u->num_heads) {
        k->failed = 1;
        sd_errf(k->err, "%s: attention width %lld does not split into %d heads", k->m->path, (long long)c, u->num_heads);
    }
}

static void check_unet(checker *k)
{
    const sd_unet_config *u = &k->m->unet;
    const char *P = SD_PREFIX_UNET;
    int64_t mc = u->model_channels, ted = u->time_embed_dim, R = u->num_res_blocks;
    char pre[512];
    if (mc % u->groups) {
        k->failed = 1;
        sd_errf(k->err, "%s: U-Net width %lld is not a multiple of %d GroupNorm groups", k->m->path, (long long)mc,
                u->groups);
        return;
    }
    NEED(k, 2, S(ted, mc), "%stime_embed.0.weight", P);
    NEED(k, 1, S(ted), "%stime_embed.0.bias", P);
    NEED(k, 2, S(ted, ted), "%stime_embed.2.weight", P);
    NEED(k, 1, S(ted), "%stime_embed.2.bias", P);
    NEED(k, 4, S(mc, u->in_channels, 3, 3), "%sinput_blocks.0.0.weight", P);
    NEED(k, 1, S(mc), "%sinput_blocks.0.0.bias", P);
    int64_t skips[64];
    int ns = 0;
    skips[ns++] = mc;
    int64_t ch = mc;
    int idx = 1;
    for (int l = 0; l < u->n_levels; l++) {
        int64_t co = mc * u->channel_mult[l];
        for (int j = 0; j < R; j++, idx++) {
            snprintf(pre, sizeof pre, "%sinput_blocks.%d.0.", P, idx);
            need_unet_res(k, pre, ch, co, ted);
            ch = co;
            if (u->attn[l]) {
                snprintf(pre, sizeof pre, "%sinput_blocks.%d.1.", P, idx);
                need_transformer(k, pre, ch, u);
            }
            if (ns < 64) skips[ns++] = ch;
        }
        if (l != u->n_levels - 1) {
            NEED(k, 4, S(ch, ch, 3, 3), "%sinput_blocks.%d.0.op.weight", P, idx);
            NEED(k, 1, S(ch), "%sinput_blocks.%d.0.op.bias", P, idx);
            if (ns < 64) skips[ns++] = ch;
            idx++;
        }
    }
    snprintf(pre, sizeof pre, "%smiddle_block.0.", P);
    need_unet_res(k, pre, ch, ch, ted);
    if (u->mid_attn) {
        snprintf(pre, sizeof pre, "%smiddle_block.1.", P);
        need_transformer(k, pre, ch, u);
    }
    snprintf(pre, sizeof pre, "%smiddle_block.%d.", P, u->mid_attn ? 2 : 1);
    need_unet_res(k, pre, ch, ch, ted);
    idx = 0;
    for (int l = u->n_levels - 1; l >= 0; l--) {
        int64_t co = mc * u->channel_mult[l];
        for (int j = 0; j <= R; j++, idx++) {
            int64_t skip = ns > 0 ? skips[--ns] : 0;
            snprintf(pre, sizeof pre, "%soutput_blocks.%d.0.", P, idx);
            need_unet_res(k, pre, ch + skip, co, ted);
            ch = co;
            if (u->attn[l]) {
                snprintf(pre, sizeof pre, "%soutput_blocks.%d.1.", P, idx);
                need_transformer(k, pre, ch, u);
            }
            if (l > 0 && j == R) {
                NEED(k, 4, S(ch, ch, 3, 3), "%soutput_blocks.%d.%d.conv.weight", P, idx, u->attn[l] ? 2 : 1);
                NEED(k, 1, S(ch), "%soutput_blocks.%d.%d.conv.bias", P, idx, u->attn[l] ? 2 : 1);
            }
        }
    }
    snprintf(pre, sizeof pre, "%sout.0.", P);
    need_norm(k, mc, pre);
    /* The U-Net predicts noise in the latent space: its output has the VAE's latent channels (or, without a
     * VAE, as many as its input). Taken from there rather than from out.2 itself, so that a wrong out.2 shape
     * is reported against the shape it should have. */
    int64_t oc = k->m->has_vae && k->m->vae.z_channels > 0 ? k->m->vae.z_channels : u->in_channels;
    NEED(k, 4, S(oc, mc, 3, 3), "%sout.2.weight", P);
    NEED(k, 1, S(oc), "%sout.2.bias", P);
}

static void need_vae_res(checker *k, const char *pre, int64_t cin, int64_t cout)
{
    char p[512];
    snprintf(p, sizeof p, "%snorm1.", pre);
    need_norm(k, cin, p);
    NEED(k, 4, S(cout, cin, 3, 3), "%sconv1.weight", pre);
    NEED(k, 1, S(cout), "%sconv1.bias", pre);
    snprintf(p, sizeof p, "%snorm2.", pre);
    need_norm(k, cout, p);
    NEED(k, 4, S(cout, cout, 3, 3), "%sconv2.weight", pre);
    NEED(k, 1, S(cout), "%sconv2.bias", pre);
    if (cin != cout) {
        NEED(k, 4, S(cout, cin, 1, 1), "%snin_shortcut.weight", pre);
        NEED(k, 1, S(cout), "%snin_shortcut.bias", pre);
    }
}

static void need_vae_mid(checker *k, const char *coder, int64_t c)
{
    const char *P = SD_PREFIX_VAE;
    char pre[512];
    snprintf(pre, sizeof pre, "%s%s.mid.block_1.", P, coder);
    need_vae_res(k, pre, c, c);
    snprintf(pre, sizeof pre, "%s%s.mid.attn_1.norm.", P, coder);
    need_norm(k, c, pre);
    static const char *proj[] = {"q", "k", "v", "proj_out"};
    for (int i = 0; i < 4; i++) {
        NEED(k, 4, S(c, c, 1, 1), "%s%s.mid.attn_1.%s.weight", P, coder, proj[i]);
        NEED(k, 1, S(c), "%s%s.mid.attn_1.%s.bias", P, coder, proj[i]);
    }
    snprintf(pre, sizeof pre, "%s%s.mid.block_2.", P, coder);
    need_vae_res(k, pre, c, c);
}

static void check_vae(checker *k)
{
    const sd_vae_config *v = &k->m->vae;
    const char *P = SD_PREFIX_VAE;
    int64_t ch = v->ch, z = v->z_channels, L = v->n_levels;
    char pre[512];
    if (ch % v->groups) {
        k->failed = 1;
        sd_errf(k->err, "%s: VAE width %lld is not a multiple of %d GroupNorm groups", k->m->path, (long long)ch,
                v->groups);
        return;
    }
    if (v->has_encoder) {
        NEED(k, 4, S(ch, v->in_channels, 3, 3), "%sencoder.conv_in.weight", P);
        NEED(k, 1, S(ch), "%sencoder.conv_in.bias", P);
        int64_t c = ch;
        for (int l = 0; l < L; l++) {
            int64_t co = ch * v->ch_mult[l];
            for (int j = 0; j < v->num_res_blocks; j++) {
                snprintf(pre, sizeof pre, "%sencoder.down.%d.block.%d.", P, l, j);
                need_vae_res(k, pre, c, co);
                c = co;
            }
            if (l != L - 1) {
                NEED(k, 4, S(c, c, 3, 3), "%sencoder.down.%d.downsample.conv.weight", P, l);
                NEED(k, 1, S(c), "%sencoder.down.%d.downsample.conv.bias", P, l);
            }
        }
        need_vae_mid(k, "encoder", c);
        snprintf(pre, sizeof pre, "%sencoder.norm_out.", P);
        need_norm(k, c, pre);
        NEED(k, 4, S(2 * z, c, 3, 3), "%sencoder.conv_out.weight", P);
        NEED(k, 1, S(2 * z), "%sencoder.conv_out.bias", P);
        NEED(k, 4, S(2 * z, 2 * z, 1, 1), "%squant_conv.weight", P);
        NEED(k, 1, S(2 * z), "%squant_conv.bias", P);
    }
    if (v->has_decoder) {
        int64_t c = ch * v->ch_mult[L - 1];
        NEED(k, 4, S(z, z, 1, 1), "%spost_quant_conv.weight", P);
        NEED(k, 1, S(z), "%spost_quant_conv.bias", P);
        NEED(k, 4, S(c, z, 3, 3), "%sdecoder.conv_in.weight", P);
        NEED(k, 1, S(c), "%sdecoder.conv_in.bias", P);
        need_vae_mid(k, "decoder", c);
        for (int l = (int)L - 1; l >= 0; l--) {
            int64_t co = ch * v->ch_mult[l];
            for (int j = 0; j <= v->num_res_blocks; j++) {
                snprintf(pre, sizeof pre, "%sdecoder.up.%d.block.%d.", P, l, j);
                need_vae_res(k, pre, c, co);
                c = co;
            }
            if (l != 0) {
                NEED(k, 4, S(c, c, 3, 3), "%sdecoder.up.%d.upsample.conv.weight", P, l);
                NEED(k, 1, S(c), "%sdecoder.up.%d.upsample.conv.bias", P, l);
            }
        }
        snprintf(pre, sizeof pre, "%sdecoder.norm_out.", P);
        need_norm(k, c, pre);
        NEED(k, 4, S(v->in_channels, c, 3, 3), "%sdecoder.conv_out.weight", P);
        NEED(k, 1, S(v->in_channels), "%sdecoder.conv_out.bias", P);
    }
}

static void check_text(checker *k)
{
    const sd_text_config *t = &k->m->text;
    int64_t W = t->width, F = t->mlp;
    char pre[512], p[600];
    if (t->kind == SD_TEXT_CLIP_HF) {
        const char *P = SD_PREFIX_CLIP;
        NEED(k, 2, S(t->vocab, W), "%sembeddings.token_embedding.weight", P);
        NEED(k, 2, S(t->positions, W), "%sembeddings.position_embedding.weight", P);
        for (int i = 0; i < t->layers; i++) {
            snprintf(pre, sizeof pre, "%sencoder.layers.%d.", P, i);
            static const char *proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
            for (int j = 0; j < 4; j++) {
                NEED(k, 2, S(W, W), "%sself_attn.%s.weight", pre, proj[j]);
                NEED(k, 1, S(W), "%sself_attn.%s.bias", pre, proj[j]);
            }
            snprintf(p, sizeof p, "%slayer_norm1.", pre);
            need_norm(k, W, p);
            snprintf(p, sizeof p, "%slayer_norm2.", pre);
            need_norm(k, W, p);
            NEED(k, 2, S(F, W), "%smlp.fc1.weight", pre);
            NEED(k, 1, S(F), "%smlp.fc1.bias", pre);
            NEED(k, 2, S(W, F), "%smlp.fc2.weight", pre);
            NEED(k, 1, S(W), "%smlp.fc2.bias", pre);
        }
        snprintf(p, sizeof p, "%sfinal_layer_norm.", P);
        need_norm(k, W, p);
    } else {
        const char *P = SD_PREFIX_OPENCLIP;
        NEED(k, 2, S(t->vocab, W), "%stoken_embedding.weight", P);
        NEED(k, 2, S(t->positions, W), "%spositional_embedding", P);
        for (int i = 0; i < t->layers; i++) {
            snprintf(pre, sizeof pre, "%stransformer.resblocks.%d.", P, i);
            snprintf(p, sizeof p, "%sln_1.", pre);
            need_norm(k, W, p);
            snprintf(p, sizeof p, "%sln_2.", pre);
            need_norm(k, W, p);
            NEED(k, 2, S(3 * W, W), "%sattn.in_proj_weight", pre);
            NEED(k, 1, S(3 * W), "%sattn.in_proj_bias", pre);
            NEED(k, 2, S(W, W), "%sattn.out_proj.weight", pre);
            NEED(k, 1, S(W), "%sattn.out_proj.bias", pre);
            NEED(k, 2, S(F, W), "%smlp.c_fc.weight", pre);
            NEED(k, 1, S(F), "%smlp.c_fc.bias", pre);
            NEED(k, 2, S(W, F), "%smlp.c_proj.weight", pre);
            NEED(k, 1, S(W), "%smlp.c_proj.bias", pre);
        }
        snprintf(p, sizeof p, "%sln_final.", P);
        need_norm(k, W, p);
    }
    if (t->positions < 77) {
        k->failed = 1;
        sd_errf(k->err, "%s: text encoder has %d positions; Stable Diffusion prompts need 77", k->m->path, t->positions);
    }
}

/* ---- opening ---- */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Something is there (a FIFO or a folder in a file's place is then refused by sd_open_regular with a
 * message that says so, rather than reported as missing). */
static int path_present(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int open_folder(sd_model *m, const char *dir, int *cap, sd_err *err)
{
    sd_diffusers_layout lay;
    if (sd_diffusers_read_configs(dir, m, &lay, err)) return -1;
    static const struct {
        const char *comp, *file;
    } parts[] = {{"unet", "unet/diffusion_pytorch_model.safetensors"},
                 {"vae", "vae/diffusion_pytorch_model.safetensors"},
                 {"text_encoder", "text_encoder/model.safetensors"}};
    int present[3] = {m->has_unet, m->has_vae, m->has_text};
    for (int p = 0; p < 3; p++) {
        if (!present[p]) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, parts[p].file);
        if (!path_present(path)) {
            char alt[4096];
            snprintf(alt, sizeof alt, "%s/%s/diffusion_pytorch_model.bin", dir, parts[p].comp);
            if (file_exists(alt))
                return sd_errf(err, "%s: only a PyTorch .bin file was found; sdgen reads .safetensors (convert it first)",
                               alt);
            return sd_errf(err, "%s: missing (the %s config is there but its weights are not)", path, parts[p].comp);
        }
        int fi = m->n_files;
        if (sd_st_open(&m->files[fi], path, err)) return -1;
        m->n_files++;
        const sd_safetensors *st = &m->files[fi];
        for (int i = 0; i < st->n_tensors; i++) {
            char ldm[1024];
            int conv = 0;
            if (sd_diffusers_ldm_name(parts[p].comp, st->tensors[i].name, &lay, ldm, sizeof ldm, &conv)) continue;
            if (add_weight(m, ldm, fi, i, &st->tensors[i], conv, cap, err)) return -1;
        }
    }
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer", dir);
    if (is_dir(tok)) m->tokenizer_dir = strdup(tok);
    return 0;
}

static void pick_family(sd_model *m)
{
    int sd1 = 0, sd2 = 0, xl = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const char *n = m->weights[i].name;
        if (!strncmp(n, SD_PREFIX_CLIP, strlen(SD_PREFIX_CLIP))) sd1 = 1;
        else if (!strncmp(n, SD_PREFIX_OPENCLIP, strlen(SD_PREFIX_OPENCLIP))) sd2 = 1;
        else if (!strncmp(n, "conditioner.embedders.", 22)) xl = 1;
    }
    const char *arch = sd_model_meta(m, "modelspec.architecture");
    if (xl || (arch && strstr(arch, "stable-diffusion-xl"))) m->family = SD_FAMILY_SDXL;
    else if (sd2) m->family = SD_FAMILY_SD2;
    else if (sd1) m->family = SD_FAMILY_SD1;
    else if (arch && strstr(arch, "stable-diffusion-v2")) m->family = SD_FAMILY_SD2;
    else if (arch && strstr(arch, "stable-diffusion-v1")) m->family = SD_FAMILY_SD1;
    else m->family = SD_FAMILY_UNKNOWN;
}

static void pick_prediction(sd_model *m)
{
    if (m->prediction != SD_PRED_UNKNOWN) return; /* diffusers scheduler config said */
    const char *pt = sd_model_meta(m, "modelspec.prediction_type");
    if (pt) {
        if (!strcmp(pt, "epsilon") || !strcmp(pt, "eps")) m->prediction = SD_PRED_EPS;
        else if (!strcmp(pt, "v") || !strcmp(pt, "v_prediction") || !strcmp(pt, "v-prediction")) m->prediction = SD_PRED_V;
        if (m->prediction != SD_PRED_UNKNOWN) {
            snprintf(m->prediction_why, sizeof m->prediction_why, "modelspec.prediction_type \"%s\" in the file's metadata", pt);
            return;
        }
    }
    if (m->family == SD_FAMILY_SD1) {
        m->prediction = SD_PRED_EPS;
        snprintf(m->prediction_why, sizeof m->prediction_why, "SD 1.x models predict noise (eps)");
    } else if (m->family == SD_FAMILY_SD2) {
        m->prediction = SD_PRED_V;
        snprintf(m->prediction_why, sizeof m->prediction_why,
                 "SD 2.x default: the common 768-v checkpoints are v-prediction (use --prediction eps for 512-base files)");
    }
}

int sd_model_open(sd_model *m, const char *path, sd_err *err)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    m->sched.num_train_timesteps = 1000;
    m->sched.beta_start = 0.00085; /* v1-inference.yaml linear_start / linear_end */
    m->sched.beta_end = 0.012;
    snprintf(m->sched.beta_schedule, sizeof m->sched.beta_schedule, "scaled_linear");
    m->sched.steps_offset = 1;
    int cap = 0;
    if (is_dir(path)) {
        m->is_folder = 1;
        char idx[4096];
        snprintf(idx, sizeof idx, "%s/unet/config.json", path);
        if (!path_present(idx)) {
            sd_errf(err, "%s: not a diffusers folder (no unet/config.json) and not a .safetensors file", path);
            goto fail;
        }
        if (open_folder(m, path, &cap, err)) goto fail;
        if (build_hash(m, err)) goto fail;
        if (m->has_vae) {
            m->vae.has_encoder = has(m, "%sencoder.conv_in.weight", SD_PREFIX_VAE);
            m->vae.has_decoder = has(m, "%sdecoder.conv_in.weight", SD_PREFIX_VAE);
            if (!m->vae.has_encoder && !m->vae.has_decoder) {
                sd_errf(err, "%s/vae: neither an encoder nor a decoder was found", path);
                goto fail;
            }
        }
        m->family = m->unet.linear_proj || m->text.pad_id == 0 || m->unet.context_dim == 1024 ? SD_FAMILY_SD2
                                                                                                  : SD_FAMILY_SD1;
    } else {
        if (sd_st_open(&m->files[0], path, err)) goto fail;
        m->n_files = 1;
        const sd_safetensors *st = &m->files[0];
        for (int i = 0; i < st->n_tensors; i++)
            if (add_weight(m, st->tensors[i].name, 0, i, &st->tensors[i], 0, &cap, err)) goto fail;
        if (build_hash(m, err)) goto fail;
        pick_family(m);
        if (m->family == SD_FAMILY_SDXL) {
            pick_prediction(m);
            return 0; /* reported by `info`; the generator refuses it */
        }
        if (m->family == SD_FAMILY_UNKNOWN) {
            if (!has(m, "%sinput_blocks.0.0.weight", SD_PREFIX_UNET)) {
                sd_errf(err, "%s: not a Stable Diffusion checkpoint (no model.diffusion_model.*, first_stage_model.* or "
                        "cond_stage_model.* tensors)", path);
                goto fail;
            }
        }
        if (has(m, "%sinput_blocks.0.0.weight", SD_PREFIX_UNET) && derive_unet(m, err)) goto fail;
        if ((has(m, "%sencoder.conv_in.weight", SD_PREFIX_VAE) || has(m, "%sdecoder.conv_in.weight", SD_PREFIX_VAE)) &&
            derive_vae(m, err))
            goto fail;
        if (m->family != SD_FAMILY_UNKNOWN && derive_text(m, err)) goto fail;
        if (m->family == SD_FAMILY_UNKNOWN)
            m->family = m->unet.linear_proj || m->unet.context_dim == 1024 ? SD_FAMILY_SD2 : SD_FAMILY_SD1;
        if (m->has_unet) {
            if (m->family == SD_FAMILY_SD2) m->unet.head_dim = 64; /* v2-inference.yaml num_head_channels */
            else m->unet.num_heads = 8;                            /* v1-inference.yaml num_heads */
        }
        /* A vocabulary beside the checkpoint: <name>.tokenizer/ or tokenizer/ in the same folder. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        char tok[4200];
        snprintf(tok, sizeof tok, "%s/tokenizer", dir);
        if (is_dir(tok)) m->tokenizer_dir = strdup(tok);
    }
    if (m->has_unet && m->has_text && m->unet.context_dim != m->text.width && m->unet.context_dim > 0) {
        sd_errf(err, "%s: the U-Net attends to %d-wide text but the text encoder is %d wide", path, m->unet.context_dim,
                m->text.width);
        goto fail;
    }
    checker k = {m, err, 0};
    if (m->has_unet) check_unet(&k);
    if (m->has_vae) check_vae(&k);
    if (m->has_text) check_text(&k);
    if (k.failed) goto fail;
    if (!m->has_unet && !m->has_vae && !m->has_text) {
        sd_errf(err, "%s: no U-Net, VAE or text encoder found", path);
        goto fail;
    }
    /* Only float weights can be computed with. */
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        sd_dtype dt = m->files[w->file].tensors[w->index].dtype;
        int used = !strncmp(w->name, SD_PREFIX_UNET, strlen(SD_PREFIX_UNET)) ||
                   !strncmp(w->name, SD_PREFIX_VAE, strlen(SD_PREFIX_VAE)) ||
                   (!strncmp(w->name, "cond_stage_model.", 17) && !strstr(w->name, "position_ids"));
        if (used && dt != SD_DT_F32 && dt != SD_DT_F16 && dt != SD_DT_BF16 && dt != SD_DT_F64 &&
            !strstr(w->name, "logit_scale"))
        {
            sd_errf(err, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", m->files[w->file].path,
                    w->name, sd_dtype_name(dt));
            goto fail;
        }
    }
    pick_prediction(m);
    return 0;
fail:
    sd_model_close(m);
    return -1;
}

void sd_model_close(sd_model *m)
{
    for (int i = 0; i < m->n_weights; i++) {
        if (m->weights[i].f32_owned) free(m->weights[i].f32);
        free(m->weights[i].name);
    }
    free(m->weights);
    free(m->hash);
    free(m->ring);
    for (int f = 0; f < m->n_files; f++) sd_st_close(&m->files[f]);
    free(m->path);
    free(m->tokenizer_dir);
    memset(m, 0, sizeof *m);
}

int sd_model_weight(sd_model *m, const char *name, sd_tensor *out, sd_err *err)
{
    sd_weight_ref *w = (sd_weight_ref *)sd_model_find(m, name);
    if (!w) return sd_errf(err, "%s: tensor \"%s\" is missing", m->path, name);
    if (w->ndim > SD_MAX_DIMS)
        return sd_errf(err, "%s: tensor \"%s\" has %d dimensions (at most %d supported)", m->path, name, w->ndim,
                       SD_MAX_DIMS);
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    float *data = w->f32;
    if (!data && m->weights_mode == SD_WEIGHTS_F16 && m->ring && t->dtype != SD_DT_F32 &&
        (size_t)t->numel <= m->ring_cap) {
        /* per-use conversion into the ring: nothing is kept */
        size_t need = ((size_t)t->numel + 15) & ~(size_t)15;
        if (m->ring_pos + need > m->ring_cap) m->ring_pos = 0;
        data = m->ring + m->ring_pos;
        m->ring_pos += need;
        if (sd_st_read_f32(st, t, data, err)) return -1;
    } else if (!w->f32) {
        const void *p = sd_st_data(st, t);
        if (t->dtype == SD_DT_F32 && ((uintptr_t)p & 3) == 0) {
            w->f32 = (float *)p; /* zero-copy view into the read-only mapping */
        } else {
            float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            if (!buf) return sd_errcf(err, SD_EXIT_OOM, "%s: out of memory converting \"%s\"", m->path, name);
            if (sd_st_read_f32(st, t, buf, err)) {
                free(buf);
                return -1;
            }
            w->f32 = buf;
            w->f32_owned = 1;
            m->converted_bytes += (size_t)t->numel * sizeof(float);
        }
        data = w->f32;
    }
    memset(out, 0, sizeof *out);
    out->data = data;
    out->ndim = w->ndim ? w->ndim : 1;
    for (int d = 0; d < SD_MAX_DIMS; d++) out->ne[d] = d < w->ndim ? w->shape[d] : 1;
    return 0;
}

int sd_model_set_weights_mode(sd_model *m, sd_weights_mode mode, sd_err *err)
{
    m->weights_mode = mode;
    if (mode == SD_WEIGHTS_F16 && !m->ring) {
        size_t largest = 0;
        for (int i = 0; i < m->n_weights; i++) {
            const sd_st_tensor *t = &m->files[m->weights[i].file].tensors[m->weights[i].index];
            if (t->dtype != SD_DT_F32 && (size_t)t->numel > largest) largest = (size_t)t->numel;
        }
        m->ring_cap = 3 * (((largest + 15) & ~(size_t)15));
        if (m->ring_cap) {
            m->ring = malloc(m->ring_cap * sizeof(float));
            if (!m->ring) {
                m->weights_mode = SD_WEIGHTS_F32;
                return sd_errcf(err, SD_EXIT_OOM, "%s: out of memory for the %.0f MB weight conversion buffer",
                                m->path, m->ring_cap * 4 / 1e6);
            }
        }
        m->ring_pos = 0;
    }
    if (mode == SD_WEIGHTS_F16) {
        /* drop converted copies; F32 views into the mapping stay */
        for (int i = 0; i < m->n_weights; i++) {
            sd_weight_ref *w = &m->weights[i];
            if (w->f32_owned) {
                free(w->f32);
                w->f32 = NULL;
                w->f32_owned = 0;
            }
        }
        m->converted_bytes = 0;
    }
    return 0;
}

void sd_model_release_pages(sd_model *m, const char *prefix)
{
    size_t np = strlen(prefix);
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    for (int i = 0; i < m->n_weights; i++) {
        sd_weight_ref *w = &m->weights[i];
        if (strncmp(w->name, prefix, np)) continue;
        if (w->f32 && !w->f32_owned) continue; /* an F32 view in use: keep its pages */
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        uintptr_t b = (uintptr_t)sd_st_data(st, t), e = b + (t->end - t->begin);
        b = (b + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
        e &= ~((uintptr_t)pg - 1);
        if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
    }
}

int sd_model_weightf(sd_model *m, sd_tensor *out, sd_err *err, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_model_weight(m, name, out, err);
}

const char *sd_model_meta(const sd_model *m, const char *key)
{
    for (int f = 0; f < m->n_files; f++) {
        const char *v = sd_st_meta(&m->files[f], key);
        if (v) return v;
    }
    return NULL;
}

int64_t sd_model_param_count(const sd_model *m, const char *prefix)
{
    int64_t n = 0;
    size_t np = strlen(prefix);
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        if (strncmp(w->name, prefix, np)) continue;
        n += m->files[w->file].tensors[w->index].numel;
    }
    return n;
}

size_t sd_model_pending_f32_bytes(const sd_model *m)
{
    if (m->weights_mode != SD_WEIGHTS_F32) return 0;
    size_t n = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        if (w->f32) continue;
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        if (t->dtype == SD_DT_F32 && ((uintptr_t)sd_st_data(st, t) & 3) == 0) continue; /* zero-copy view */
        n += (size_t)t->numel * sizeof(float);
    }
    return n;
}

int sd_model_check_unchanged(const sd_model *m, sd_err *err)
{
    for (int f = 0; f < m->n_files; f++)
        if (sd_st_check_unchanged(&m->files[f], err)) return -1;
    return 0;
}

/* Index of the first NaN/Inf among n stored values of a float dtype (by the exponent bits: IEEE 754
 * binary16, bfloat16, binary32, binary64), -1 if none or not a float dtype; *count gets how many. */
static int64_t stored_nonfinite(const uint8_t *p, sd_dtype dt, int64_t n, int64_t *count)
{
    int64_t first = -1, c = 0;
    for (int64_t i = 0; i < n; i++) {
        int bad;
        if (dt == SD_DT_F32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            bad = (u & 0x7f800000u) == 0x7f800000u;
        } else if (dt == SD_DT_F16 || dt == SD_DT_BF16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad = dt == SD_DT_F16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u;
        } else if (dt == SD_DT_F64) {
            uint64_t u;
            memcpy(&u, p + 8 * i, 8);
            bad = (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
        } else {
            return -1;
        }
        if (bad) {
            if (first < 0) first = i;
            c++;
        }
    }
    *count = c;
    return first;
}

int sd_model_check_weights(const sd_model *m, sd_err *err)
{
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        int64_t count = 0;
        int64_t k = stored_nonfinite(sd_st_data(st, t), t->dtype, t->numel, &count);
        if (k < 0) continue;
        const uint8_t *p = (const uint8_t *)sd_st_data(st, t);
        float v;
        if (t->dtype == SD_DT_F32) memcpy(&v, p + 4 * k, 4);
        else if (t->dtype == SD_DT_F64) {
            double d;
            memcpy(&d, p + 8 * k, 8);
            v = (float)d;
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            if (t->dtype == SD_DT_F16) v = sd_f16_to_f32_1(h);
            else {
                uint32_t b = (uint32_t)h << 16;
                memcpy(&v, &b, 4);
            }
        }
        return sd_errf(err, "%s: tensor \"%s\" holds %s at element %lld (%lld non-finite of %lld values): the "
                       "file is damaged", st->path, t->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf",
                       (long long)k, (long long)count, (long long)t->numel);
    }
    return 0;
}
