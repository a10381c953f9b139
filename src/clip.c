/* clip.c — the CLIP text encoders (towers) of Stable Diffusion, by LDM/SGM weight names under a
 * prefix the family gives (sd_text_config.prefix).
 *
 * HF layout (transformers CLIPTextModel; SD 1.x, SDXL's first encoder): x = token_embedding[id] +
 * position_embedding[pos]; each encoder layer is pre-LayerNorm
 *   x += out_proj(attn(q_proj, k_proj, v_proj of layer_norm1(x)))   (causal mask)
 *   x += fc2(act(fc1(layer_norm2(x))))                              (act: quick_gelu or gelu)
 * and the output is final_layer_norm(x) after the last layer (last_hidden_state).
 *
 * OpenCLIP layout (SD 2.x as LDM FrozenOpenCLIPEmbedder encode_with_transformer, SDXL's second
 * encoder): the same residual block with ln_1, fused attn.in_proj (rows q, k, v), attn.out_proj,
 * ln_2, mlp.c_fc, GELU (erf), mlp.c_proj; SD 2.x stops after block layers−2 (layer
 * "penultimate") and applies ln_final.
 *
 * SDXL (SGM GeneralConditioner, diffusers StableDiffusionXLPipeline.encode_prompt; docs/SEMANTICS.md)
 * takes both encoders' penultimate hidden states without the final LayerNorm (final_norm 0), and
 * the pooled vector of the second: ln_final of the last block's output at the end token (the
 * largest id), times text_projection. A diffusers SDXL folder holds the second tower under transformers
 * names (CLIPTextModelWithProjection): separate q/k/v projections and text_projection as a Linear
 * weight [proj, width], the transpose of OpenCLIP's [width, proj] parameter.
 *
 * LayerNorm eps is 1e-5 in both (transformers layer_norm_eps, torch nn.LayerNorm default).
 *
 * clip_skip follows AUTOMATIC1111: for the HF CLIP model (FrozenCLIPEmbedderWithCustomWords.
 * encode_with_transformers) clip_skip N > 1 takes hidden_states[−N], i.e. the output of layer
 * layers−N+1, and then applies final_layer_norm; for OpenCLIP
 * (FrozenOpenCLIPEmbedderWithCustomWords) the setting is not used: always the penultimate block.
 */
#include "sdgen/clip.h"
#include "sdgen/embeddings.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "sdgen/lowrank.h"
#include "sdgen/ops.h"

#define CLIP_SEQ 77
#define CLIP_LN_EPS 1e-5f

typedef struct clip_ctx {
    sd_model *m;
    sd_arena *a; /* F16 weights are converted into the scope of the layer that uses them */
    sd_err *err;
    const char *pfx;
} clip_ctx;

/* ---- the architecture, from the shapes of an LDM checkpoint ---- */

int sd_text_derive(sd_model *m, sd_text_config *c, sd_err *err)
{
    /* the family's choices: which tower, where, and how its output is taken */
    const sd_text_kind kind = c->kind;
    const int final_norm = c->final_norm, penultimate = c->penultimate;
    char P[sizeof c->prefix];
    snprintf(P, sizeof P, "%s", c->prefix);
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->final_norm = final_norm;
    c->penultimate = penultimate;
    snprintf(c->prefix, sizeof c->prefix, "%s", P);
    if (kind == SD_TEXT_CLIP_HF) {
        c->vocab = (int)sd_model_dim(m, 0, "%sembeddings.token_embedding.weight", P);
        c->width = (int)sd_model_dim(m, 1, "%sembeddings.token_embedding.weight", P);
        c->positions = (int)sd_model_dim(m, 0, "%sembeddings.position_embedding.weight", P);
        while (c->layers < 1024 && sd_model_has(m, "%sencoder.layers.%d.layer_norm1.weight", P, c->layers)) c->layers++;
        c->mlp = (int)sd_model_dim(m, 0, "%sencoder.layers.0.mlp.fc1.weight", P);
        c->act = SD_ACT_QUICK_GELU; /* OpenAI CLIP ViT-L/14 */
        c->pad_id = c->vocab - 1;   /* <|endoftext|>, 49407 for the OpenAI vocabulary */
    } else {
        c->vocab = (int)sd_model_dim(m, 0, "%stoken_embedding.weight", P);
        c->width = (int)sd_model_dim(m, 1, "%stoken_embedding.weight", P);
        c->positions = (int)sd_model_dim(m, 0, "%spositional_embedding", P);
        while (c->layers < 1024 && sd_model_has(m, "%stransformer.resblocks.%d.ln_1.weight", P, c->layers)) c->layers++;
        c->mlp = (int)sd_model_dim(m, 0, "%stransformer.resblocks.0.mlp.c_fc.weight", P);
        c->act = SD_ACT_GELU;
        c->pad_id = 0;
        /* OpenCLIP's text_projection [width, proj]: x·P gives the pooled vector */
        if (sd_model_has(m, "%stext_projection", P)) c->proj_dim = (int)sd_model_dim(m, 1, "%stext_projection", P);
    }
    /* "penultimate" (SD 2.x FrozenOpenCLIPEmbedder, SDXL's hidden_states[-2]): the last layer does not feed
     * the context */
    c->layers_used = penultimate ? c->layers - 1 : c->layers;
    if (c->vocab <= 0 || c->width <= 0 || c->positions <= 0 || c->layers <= 0 || c->mlp <= 0 || c->layers_used <= 0)
        return sd_errf(err, "%s: cannot work out the text encoder's sizes from its tensors (%s*)", m->path, P);
    /* Both CLIP text towers use 64-wide heads. */
    c->heads = c->width >= 64 ? c->width / 64 : 1;
    if (c->width % c->heads) return sd_errf(err, "%s: text width %d does not split into 64-wide heads", m->path, c->width);
    return 0;
}

double sd_text_flops(const sd_text_config *t)
{
    const double n = CLIP_SEQ, W = t->width, F = t->mlp;
    return t->layers_used * (2 * n * W * W * 4 + 2 * 2 * n * n * W + 2 * 2 * n * W * F);
}

/* ---- the tensors the encoder reads, checked by name and shape at load ---- */

int sd_text_check(const sd_model *m, const sd_text_config *t, sd_err *err)
{
    sd_check k = {m, err, 0};
    const char *P = t->prefix;
    const int64_t W = t->width, F = t->mlp;
    char pre[200], p[260];
    if (t->kind == SD_TEXT_CLIP_HF) {
        sd_check_shape(&k, P, "embeddings.token_embedding.weight", 2, t->vocab, W, 0, 0);
        sd_check_shape(&k, P, "embeddings.position_embedding.weight", 2, t->positions, W, 0, 0);
        for (int i = 0; i < t->layers; i++) {
            snprintf(pre, sizeof pre, "%sencoder.layers.%d.", P, i);
            static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
            for (int j = 0; j < 4; j++) {
                snprintf(p, sizeof p, "%sself_attn.%s.", pre, proj[j]);
                sd_check_linear(&k, p, W, W, 1);
            }
            snprintf(p, sizeof p, "%slayer_norm1.", pre);
            sd_check_norm(&k, p, W);
            snprintf(p, sizeof p, "%slayer_norm2.", pre);
            sd_check_norm(&k, p, W);
            snprintf(p, sizeof p, "%smlp.fc1.", pre);
            sd_check_linear(&k, p, F, W, 1);
            snprintf(p, sizeof p, "%smlp.fc2.", pre);
            sd_check_linear(&k, p, W, F, 1);
        }
        snprintf(p, sizeof p, "%sfinal_layer_norm.", P);
        sd_check_norm(&k, p, W);
        if (t->proj_dim > 0) sd_check_shape(&k, P, "text_projection.weight", 2, t->proj_dim, W, 0, 0);
    } else {
        sd_check_shape(&k, P, "token_embedding.weight", 2, t->vocab, W, 0, 0);
        sd_check_shape(&k, P, "positional_embedding", 2, t->positions, W, 0, 0);
        for (int i = 0; i < t->layers; i++) {
            snprintf(pre, sizeof pre, "%stransformer.resblocks.%d.", P, i);
            snprintf(p, sizeof p, "%sln_1.", pre);
            sd_check_norm(&k, p, W);
            snprintf(p, sizeof p, "%sln_2.", pre);
            sd_check_norm(&k, p, W);
            sd_check_shape(&k, pre, "attn.in_proj_weight", 2, 3 * W, W, 0, 0);
            sd_check_shape(&k, pre, "attn.in_proj_bias", 1, 3 * W, 0, 0, 0);
            snprintf(p, sizeof p, "%sattn.out_proj.", pre);
            sd_check_linear(&k, p, W, W, 1);
            snprintf(p, sizeof p, "%smlp.c_fc.", pre);
            sd_check_linear(&k, p, F, W, 1);
            snprintf(p, sizeof p, "%smlp.c_proj.", pre);
            sd_check_linear(&k, p, W, F, 1);
        }
        snprintf(p, sizeof p, "%sln_final.", P);
        sd_check_norm(&k, p, W);
        if (t->proj_dim > 0) sd_check_shape(&k, P, "text_projection", 2, W, t->proj_dim, 0, 0);
    }
    if (t->positions < CLIP_SEQ)
        sd_check_fail(&k, "text encoder has %d positions; Stable Diffusion prompts need %d", t->positions, CLIP_SEQ);
    return k.failed ? -1 : 0;
}

/* Fetch "<prefix><name>" and require the given shape (d[i] < 0: any); product: the weight operand of a
 * product, which may come back as unconverted F16 halves (sd_model_weight_f16). */
static int clip_fetch(clip_ctx *c, sd_tensor *out, int product, int ndim, int64_t d0, int64_t d1, const char *fmt,
                      va_list ap)
{
    char name[512];
    int n0 = snprintf(name, sizeof name, "%s", c->pfx);
    int n = vsnprintf(name + n0, sizeof name - (size_t)n0, fmt, ap);
    if (n < 0 || n0 + n >= (int)sizeof name) return sd_errf(c->err, "text encoder: weight name too long");
    const int64_t shape[2] = {d0, d1};
    const sd_op_timer pt = sd_op_begin(); /* F16 weights are converted here (bench --profile) */
    int rc = product ? sd_model_weight_f16(c->m, c->a, name, out, c->err)
                     : sd_model_weight(c->m, c->a, name, out, c->err);
    if (!rc && sd_tensor_expect(out, name, ndim, shape, c->err)) rc = sd_err_prefix(c->err, "%s", c->m->path);
    sd_op_end(SD_OP_WEIGHTS, pt, 0);
    return rc;
}

static int clip_w(clip_ctx *c, sd_tensor *out, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int clip_w(clip_ctx *c, sd_tensor *out, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int rc = clip_fetch(c, out, 0, ndim, d0, d1, fmt, ap);
    va_end(ap);
    return rc;
}

/* clip_w for a matrix that only sd_linear reads (may stay F16). */
static int clip_wp(clip_ctx *c, sd_tensor *out, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int clip_wp(clip_ctx *c, sd_tensor *out, int64_t d0, int64_t d1, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int rc = clip_fetch(c, out, 1, 2, d0, d1, fmt, ap);
    va_end(ap);
    return rc;
}

/* A view of rows [r0, r0+nr) of a 2-D weight, or of elements [r0, r0+nr) of a 1-D bias. */
static sd_tensor clip_rows(sd_tensor t, int64_t r0, int64_t nr)
{
    sd_tensor r = t;
    int64_t inner = t.ndim == 2 ? t.ne[1] : 1;
    if (t.f16)
        r.f16 = t.f16 + r0 * inner;
    else
        r.data = t.data + r0 * inner;
    r.ne[0] = nr;
    return r;
}

typedef struct clip_layer_w {
    sd_tensor ln1_g, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_g, ln2_b, w1, b1, w2, b2;
    sd_tensor wqkv, bqkv; /* OpenCLIP's packed in_proj [3D, D] and [3D]; zeros for the HF layout */
    /* LoRA modules added on the fly (sdgen/lowrank.h; NULL: none): of wq, wk, wv, wo, w1, w2 and of the packed
     * in_proj, whose q/k/v modules patch its row blocks */
    const sd_lowrank *lq, *lk, *lv, *lo, *l1, *l2, *lqkv;
} clip_layer_w;

/* The LoRA modules of weight "<prefix><fmt…>", or NULL. */
static const sd_lowrank *clip_lr(clip_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const sd_lowrank *clip_lr(clip_ctx *c, const char *fmt, ...)
{
    char name[512];
    int n0 = snprintf(name, sizeof name, "%s", c->pfx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n0, sizeof name - (size_t)n0, fmt, ap);
    va_end(ap);
    return sd_model_lowrank(c->m, name);
}

static int clip_layer_weights(clip_ctx *c, const sd_text_config *t, int l, clip_layer_w *w)
{
    const int64_t D = t->width, F = t->mlp;
    if (t->kind == SD_TEXT_CLIP_HF) {
        const char *L = "encoder.layers.";
        if (clip_w(c, &w->ln1_g, 1, D, 0, "%s%d.layer_norm1.weight", L, l) ||
            clip_w(c, &w->ln1_b, 1, D, 0, "%s%d.layer_norm1.bias", L, l) ||
            clip_wp(c, &w->wq, D, D, "%s%d.self_attn.q_proj.weight", L, l) ||
            clip_w(c, &w->bq, 1, D, 0, "%s%d.self_attn.q_proj.bias", L, l) ||
            clip_wp(c, &w->wk, D, D, "%s%d.self_attn.k_proj.weight", L, l) ||
            clip_w(c, &w->bk, 1, D, 0, "%s%d.self_attn.k_proj.bias", L, l) ||
            clip_wp(c, &w->wv, D, D, "%s%d.self_attn.v_proj.weight", L, l) ||
            clip_w(c, &w->bv, 1, D, 0, "%s%d.self_attn.v_proj.bias", L, l) ||
            clip_wp(c, &w->wo, D, D, "%s%d.self_attn.out_proj.weight", L, l) ||
            clip_w(c, &w->bo, 1, D, 0, "%s%d.self_attn.out_proj.bias", L, l) ||
            clip_w(c, &w->ln2_g, 1, D, 0, "%s%d.layer_norm2.weight", L, l) ||
            clip_w(c, &w->ln2_b, 1, D, 0, "%s%d.layer_norm2.bias", L, l) ||
            clip_wp(c, &w->w1, F, D, "%s%d.mlp.fc1.weight", L, l) ||
            clip_w(c, &w->b1, 1, F, 0, "%s%d.mlp.fc1.bias", L, l) ||
            clip_wp(c, &w->w2, D, F, "%s%d.mlp.fc2.weight", L, l) ||
            clip_w(c, &w->b2, 1, D, 0, "%s%d.mlp.fc2.bias", L, l))
            return -1;
        w->lq = clip_lr(c, "%s%d.self_attn.q_proj.weight", L, l);
        w->lk = clip_lr(c, "%s%d.self_attn.k_proj.weight", L, l);
        w->lv = clip_lr(c, "%s%d.self_attn.v_proj.weight", L, l);
        w->lo = clip_lr(c, "%s%d.self_attn.out_proj.weight", L, l);
        w->l1 = clip_lr(c, "%s%d.mlp.fc1.weight", L, l);
        w->l2 = clip_lr(c, "%s%d.mlp.fc2.weight", L, l);
        return 0;
    }
    /* OpenCLIP: torch nn.MultiheadAttention's packed in_proj, q, k, v stacked along rows. */
    const char *R = "transformer.resblocks.";
    sd_tensor win, bin;
    if (clip_w(c, &w->ln1_g, 1, D, 0, "%s%d.ln_1.weight", R, l) ||
        clip_w(c, &w->ln1_b, 1, D, 0, "%s%d.ln_1.bias", R, l) ||
        clip_wp(c, &win, 3 * D, D, "%s%d.attn.in_proj_weight", R, l) ||
        clip_w(c, &bin, 1, 3 * D, 0, "%s%d.attn.in_proj_bias", R, l) ||
        clip_wp(c, &w->wo, D, D, "%s%d.attn.out_proj.weight", R, l) ||
        clip_w(c, &w->bo, 1, D, 0, "%s%d.attn.out_proj.bias", R, l) ||
        clip_w(c, &w->ln2_g, 1, D, 0, "%s%d.ln_2.weight", R, l) ||
        clip_w(c, &w->ln2_b, 1, D, 0, "%s%d.ln_2.bias", R, l) ||
        clip_wp(c, &w->w1, F, D, "%s%d.mlp.c_fc.weight", R, l) ||
        clip_w(c, &w->b1, 1, F, 0, "%s%d.mlp.c_fc.bias", R, l) ||
        clip_wp(c, &w->w2, D, F, "%s%d.mlp.c_proj.weight", R, l) ||
        clip_w(c, &w->b2, 1, D, 0, "%s%d.mlp.c_proj.bias", R, l))
        return -1;
    w->wqkv = win;
    w->bqkv = bin;
    w->lqkv = clip_lr(c, "%s%d.attn.in_proj_weight", R, l);
    w->lo = clip_lr(c, "%s%d.attn.out_proj.weight", R, l);
    w->l1 = clip_lr(c, "%s%d.mlp.c_fc.weight", R, l);
    w->l2 = clip_lr(c, "%s%d.mlp.c_proj.weight", R, l);
    w->wq = clip_rows(win, 0, D);
    w->wk = clip_rows(win, D, D);
    w->wv = clip_rows(win, 2 * D, D);
    w->bq = clip_rows(bin, 0, D);
    w->bk = clip_rows(bin, D, D);
    w->bv = clip_rows(bin, 2 * D, D);
    return 0;
}

/* The shape of "<prefix><suffix>" as a [rows, cols] matrix, without converting it. */
static int clip_matrix_shape(clip_ctx *c, const char *suffix, int64_t cols, int64_t *rows)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", c->pfx, suffix);
    const sd_weight_ref *r = sd_model_find(c->m, name);
    if (!r) return sd_errf(c->err, "text encoder: %s is missing", name);
    if (r->ndim != 2 || r->shape[1] != cols)
        return sd_errf(c->err, "text encoder: %s is not a [n, %lld] matrix", name, (long long)cols);
    *rows = r->shape[0];
    return 0;
}

/* Arena bytes one encoder layer needs at once: its weights when they are converted per use, the
 * activations of the attention half (h, q, k, v, attention output, out_proj) and of the MLP half
 * (h, fc1, fc2), and slack for the attention kernel's per-thread blocks. Reserved up front so that each
 * layer's scope gives its memory back (common.h, sd_scope). */
static size_t clip_layer_bytes(const sd_model *m, const char *pfx, const sd_text_config *t, int n_seq)
{
    const size_t L = (size_t)n_seq * CLIP_SEQ, D = (size_t)t->width, F = (size_t)t->mlp;
    const size_t weights = sd_model_scoped_numel(m, pfx) ? 4 * D * D + 2 * D * F + 10 * D : 0;
    const size_t acts = 9 * L * D + L * (F + 2 * D); /* + OpenCLIP's packed q, k, v */
    return (weights + acts) * sizeof(float) + ((size_t)4 << 20);
}

/* q, k, v of h [n, 77, D] through OpenCLIP's packed in_proj as ONE product [n·77, D] x [D, 3D] (torch
 * nn.MultiheadAttention's in_projection_packed does the same), then split into three contiguous tensors.
 * Each output value is the same dot product over D as with the three row blocks multiplied apart, so the
 * result is bit for bit that of three products; one wide product instead of three narrow ones packs h once
 * and has a third of the thread start-ups and joins, which matter at 77 rows. */
static void clip_qkv_packed(sd_arena *a, sd_tensor h, const clip_layer_w *w, sd_tensor *q, sd_tensor *k, sd_tensor *v)
{
    const int64_t D = h.ne[h.ndim - 1], rows = sd_numel(h) / D;
    sd_tensor qkv = sd_linear_lr(a, h, &w->wqkv, &w->bqkv, w->lqkv);
    sd_tensor *out[3] = {q, k, v};
    for (int j = 0; j < 3; j++) {
        *out[j] = sd_tensor_new(a, h.ndim, h.ne);
        for (int64_t r = 0; r < rows; r++)
            memcpy(out[j]->data + r * D, qkv.data + r * 3 * D + j * D, (size_t)D * sizeof(float));
    }
}

/* Encoder layer l on x [n, 77, D], in place. One scope per layer: its weights (converted when
 * stored as F16) and its scratch end with it; x lives outside. */
static int clip_layer(clip_ctx *c, const sd_text_config *t, int l, sd_tensor x)
{
    sd_arena *a = c->a;
    sd_scope s = sd_scope_open(a);
    clip_layer_w w;
    memset(&w, 0, sizeof w);
    if (clip_layer_weights(c, t, l, &w)) return -1;
    sd_tensor h = sd_layernorm(a, x, &w.ln1_g, &w.ln1_b, CLIP_LN_EPS);
    sd_tensor q, k, v;
    if (w.wqkv.data || w.wqkv.f16) {
        clip_qkv_packed(a, h, &w, &q, &k, &v);
    } else {
        q = sd_linear_lr(a, h, &w.wq, &w.bq, w.lq);
        k = sd_linear_lr(a, h, &w.wk, &w.bk, w.lk);
        v = sd_linear_lr(a, h, &w.wv, &w.bv, w.lv);
    }
    sd_tensor o = sd_attention(a, q, k, v, t->heads, 1);
    o = sd_linear_lr(a, o, &w.wo, &w.bo, w.lo);
    sd_add_(x, o);

    h = sd_layernorm(a, x, &w.ln2_g, &w.ln2_b, CLIP_LN_EPS);
    h = sd_linear_lr(a, h, &w.w1, &w.b1, w.l1);
    if (t->act == SD_ACT_QUICK_GELU)
        sd_quick_gelu_(h);
    else
        sd_gelu_(h);
    h = sd_linear_lr(a, h, &w.w2, &w.b2, w.l2);
    sd_add_(x, h);
    sd_scope_close(a, s);
    return 0;
}

/* The pooled vector of each sequence: the final LayerNorm of the last layer's output x at the end
 * token (the first position of the largest id: <|endoftext|>, which ends every CLIP sequence), times
 * text_projection [D, P] (OpenCLIP encode_text, transformers CLIPTextModelWithProjection). */
static int clip_pooled(clip_ctx *c, const sd_text_config *t, sd_tensor x, const int32_t *tokens, int n_seq,
                       const sd_tensor *g, const sd_tensor *b, sd_tensor *pooled)
{
    sd_arena *a = c->a;
    const int64_t D = t->width, P = t->proj_dim;
    sd_tensor rows = sd_tensor_3d(a, n_seq, 1, D);
    for (int q = 0; q < n_seq; q++) {
        int eos = 0;
        for (int i = 1; i < CLIP_SEQ; i++)
            if (tokens[q * CLIP_SEQ + i] > tokens[q * CLIP_SEQ + eos]) eos = i;
        memcpy(rows.data + q * D, x.data + ((int64_t)q * CLIP_SEQ + eos) * D, (size_t)D * sizeof(float));
    }
    rows = sd_layernorm(a, rows, g, b, CLIP_LN_EPS);
    sd_tensor proj;
    if (t->kind == SD_TEXT_CLIP_HF) {
        /* transformers CLIPTextModelWithProjection (a diffusers SDXL text_encoder_2): text_projection is a
         * Linear without bias, weight [P, D], the transpose of OpenCLIP's parameter below; same product */
        if (clip_wp(c, &proj, P, D, "text_projection.weight")) return -1;
        *pooled = sd_linear(a, rows, &proj, NULL);
        const int64_t shp[2] = {n_seq, P};
        *pooled = sd_tensor_reshape(*pooled, 2, shp);
        return 0;
    }
    if (clip_w(c, &proj, 2, D, P, "text_projection")) return -1;
    /* x·P with P stored [D, P]: the transpose of a Linear weight */
    sd_tensor pt = sd_tensor_2d(a, P, D);
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j < P; j++) pt.data[j * D + i] = proj.data[i * P + j];
    *pooled = sd_linear(a, rows, &pt, NULL);
    const int64_t shp[2] = {n_seq, P};
    *pooled = sd_tensor_reshape(*pooled, 2, shp);
    return 0;
}

int sd_text_encode(sd_model *m, const sd_text_config *t, sd_arena *a, const int32_t *tokens, int n_seq, int clip_skip,
                   sd_tensor *out, sd_tensor *pooled, sd_err *err)
{
    if (!m->has_text) return sd_errf(err, "text encoder: the model has no text encoder");
    if (pooled && t->proj_dim <= 0) return sd_errf(err, "text encoder %s has no text_projection", t->prefix);
    if (n_seq < 1 || n_seq > 4096) return sd_errf(err, "text encoder: %d sequences (1..4096)", n_seq);
    if (t->width < 1 || t->width > 8192 || t->heads < 1 || t->width % t->heads || t->layers < 1 ||
        t->layers > 256 || t->mlp < 1 || t->mlp > 65536 || t->vocab < 1 || t->layers_used < 1 ||
        t->layers_used > t->layers)
        return sd_errf(err, "text encoder: unsupported configuration (width %d, heads %d, layers %d/%d, mlp %d, vocab %d)",
                       t->width, t->heads, t->layers_used, t->layers, t->mlp, t->vocab);
    if (clip_skip < 0) return sd_errf(err, "text encoder: clip_skip %d must be >= 1", clip_skip);

    /* Layers to run (see the header comment for the A1111 convention). */
    int n_run = t->layers_used;
    if (t->kind == SD_TEXT_CLIP_HF && t->final_norm && clip_skip > 1) {
        n_run = t->layers_used - (clip_skip - 1);
        if (n_run < 1)
            return sd_errf(err, "text encoder: clip_skip %d leaves no layer of %d to run (at most %d)", clip_skip,
                           t->layers_used, t->layers_used);
    }

    clip_ctx c = {m, a, err, t->prefix};
    const int64_t D = t->width;
    const int hf = t->kind == SD_TEXT_CLIP_HF;
    const char *tok_name = hf ? "embeddings.token_embedding.weight" : "token_embedding.weight";
    int64_t n_tok = 0;
    if (clip_matrix_shape(&c, tok_name, D, &n_tok)) return -1;
    const int64_t vocab = n_tok < t->vocab ? n_tok : t->vocab;
    /* textual-inversion vectors (embeddings.h): pseudo-ids SD_EMB_ID_BASE + row of this tower's table */
    const sd_embeddings *E = m->embeddings;
    const int tower = (int)(t - m->text);
    const int have_emb = E && tower >= 0 && tower < SD_MAX_TEXT && E->rows[tower] && E->width[tower] == D;
    int any_emb = 0;
    for (int64_t i = 0; i < (int64_t)n_seq * CLIP_SEQ; i++) {
        if (have_emb && tokens[i] >= SD_EMB_ID_BASE && tokens[i] - SD_EMB_ID_BASE < E->n_rows) {
            any_emb = 1;
            continue;
        }
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return sd_errf(err, "text encoder: token id %d at sequence %lld position %lld is outside the vocabulary (0..%lld)",
                           (int)tokens[i], (long long)(i / CLIP_SEQ), (long long)(i % CLIP_SEQ), (long long)vocab - 1);
    }
    /* A1111 puts token 0 where an embedding's vectors go (its EOS search for the pooled vector sees 0 there
     * too), then overwrites those rows with the vectors. */
    int32_t *plain = NULL;
    if (any_emb) {
        plain = malloc((size_t)n_seq * CLIP_SEQ * sizeof *plain);
        if (!plain) return sd_errcf(err, SD_ERR_NOMEM, "text encoder: out of memory");
        for (int64_t i = 0; i < (int64_t)n_seq * CLIP_SEQ; i++) plain[i] = tokens[i] >= SD_EMB_ID_BASE ? 0 : tokens[i];
    }
    const int32_t *ids = plain ? plain : tokens;

    jmp_buf jb;
    jmp_buf *prev = a->guard;
    if (setjmp(jb)) {
        a->guard = prev;
        free(plain);
        return sd_errcf(err, SD_ERR_NOMEM, "text encoder: out of memory");
    }
    a->guard = &jb;
    int rc = -1;

    /* Embeddings: token row + position row (CLIPTextEmbeddings; OpenCLIP adds positional_embedding).
     * Only the rows of the prompt's tokens are converted, not the whole table. */
    sd_tensor x = sd_tensor_3d(a, n_seq, CLIP_SEQ, D);
    char name[512];
    snprintf(name, sizeof name, "%s%s", c.pfx, tok_name);
    if (sd_model_weight_rows(m, name, ids, (int64_t)n_seq * CLIP_SEQ, x.data, err)) goto done;
    for (int64_t i = 0; any_emb && i < (int64_t)n_seq * CLIP_SEQ; i++)
        if (tokens[i] >= SD_EMB_ID_BASE)
            memcpy(x.data + i * D, E->rows[tower] + (size_t)(tokens[i] - SD_EMB_ID_BASE) * (size_t)D,
                   (size_t)D * sizeof(float));
    {
        sd_scope s = sd_scope_open(a);
        sd_tensor pos;
        if (clip_w(&c, &pos, 2, -1, D, hf ? "embeddings.position_embedding.weight" : "positional_embedding"))
            goto done;
        if (pos.ne[0] < CLIP_SEQ) {
            sd_errf(err, "text encoder: %lld position embeddings, need %d", (long long)pos.ne[0], CLIP_SEQ);
            goto done;
        }
        for (int64_t q = 0; q < n_seq; q++)
            for (int64_t p = 0; p < CLIP_SEQ; p++) {
                const float *pe = pos.data + p * D;
                float *xo = x.data + (q * CLIP_SEQ + p) * D;
                for (int64_t j = 0; j < D; j++) xo[j] += pe[j];
            }
        sd_scope_close(a, s);
    }

    sd_arena_reserve(a, clip_layer_bytes(m, c.pfx, t, n_seq));
    /* The pooled vector needs the last layer's output; the context is taken after n_run layers. */
    const int n_total = pooled ? t->layers : n_run;
    sd_tensor ctx = {0};
    for (int l = 0; l < n_total; l++) {
        if (l == n_run) ctx = sd_tensor_copy(a, x); /* below the layers' scopes: it stays */
        if (clip_layer(&c, t, l, x)) goto done;
    }
    if (n_run == n_total) ctx = x;

    {
        /* The final LayerNorm's weights stay in the arena below the outputs: all end at the caller's
         * reset. */
        sd_tensor lnf_g, lnf_b;
        if (clip_w(&c, &lnf_g, 1, D, 0, hf ? "final_layer_norm.weight" : "ln_final.weight") ||
            clip_w(&c, &lnf_b, 1, D, 0, hf ? "final_layer_norm.bias" : "ln_final.bias"))
            goto done;
        *out = t->final_norm ? sd_layernorm(a, ctx, &lnf_g, &lnf_b, CLIP_LN_EPS) : ctx;
        if (pooled && clip_pooled(&c, t, x, ids, n_seq, &lnf_g, &lnf_b, pooled)) goto done;
    }
    rc = 0;
done:
    a->guard = prev;
    free(plain);
    return rc;
}
