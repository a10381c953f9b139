/* cond.c — prompt → conditioning tensor (see include/sdgen/cond.h).
 *
 * References: AUTOMATIC1111 modules/sd_hijack_clip.py (forward, process_tokens: one encoder call
 * per 77-token chunk, outputs concatenated along the token axis), modules/sd_emphasis.py
 * (EmphasisOriginal.after_transformers: original_mean = z.mean(); z *= multipliers;
 * z *= original_mean / z.mean()), modules/sd_samplers_cfg_denoiser.py (pad_cond_uncond:
 * the shorter of cond/uncond gets cond_stage_model_empty_prompt repeated).
 */
#include "sdgen/cond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/clip.h"
#include "sdgen/embeddings.h"
#include "sdgen/prompt.h"

int sd_tokenizer_for_model(sd_tokenizer **out, const sd_model *m, const char *cli_vocab, sd_err *err)
{
    sd_vocab_search s = {0};
    s.cli_path = cli_vocab;
    if (m) {
        s.model_path = m->path;
        s.model_is_folder = m->is_folder;
        s.tokenizer_dir = m->tokenizer_dir;
        s.embedded_merges = sd_model_meta(m, "sdgen.bpe_merges");
    }
    return sd_tokenizer_find(out, &s, err);
}

sd_tensor sd_cond_tensor(const sd_cond *c)
{
    sd_tensor t = {0};
    t.data = c->data;
    t.ndim = 3;
    t.ne[0] = 1;
    t.ne[1] = (int64_t)SD_TOK_CONTEXT * c->n_chunks;
    t.ne[2] = c->dim;
    t.ne[3] = 1;
    return t;
}

void sd_cond_free(sd_cond *c)
{
    free(c->data);
    free(c->pooled);
    free(c->vec);
    memset(c, 0, sizeof *c);
}

/* Mean of n floats (double accumulation; torch's float mean differs by rounding only). */
static float mean_f(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return (float)(s / (double)n);
}

/* Encode the chunks with tower t: the context rows into *data (malloc'd, n_chunks × 77 × dim), and the
 * first chunk's pooled vector into *pooled when pooled is non-NULL (A1111 keeps the first chunk's). */
static int encode_chunks(sd_model *m, const sd_text_config *t, sd_arena *a, const int32_t *tokens, int n_chunks,
                         int clip_skip, float **data, int *dim, float **pooled, sd_err *err)
{
    sd_tensor emb, pl;
    if (sd_text_encode(m, t, a, tokens, n_chunks, clip_skip, &emb, pooled ? &pl : NULL, err)) return -1;
    if (emb.ndim != 3 || emb.ne[0] != n_chunks || emb.ne[1] != SD_TOK_CONTEXT || emb.ne[2] <= 0)
        return sd_errf(err, "text encoder returned an unexpected shape");
    size_t n = (size_t)sd_numel(emb);
    float *d = malloc(n * sizeof *d);
    float *q = pooled ? malloc((size_t)t->proj_dim * sizeof *q) : NULL;
    if (!d || (pooled && !q)) {
        free(d);
        free(q);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory (conditioning, %zu floats)", n);
    }
    memcpy(d, emb.data, n * sizeof *d);
    if (pooled) {
        memcpy(q, pl.data, (size_t)t->proj_dim * sizeof *q);
        *pooled = q;
    }
    *data = d;
    *dim = (int)emb.ne[2];
    return 0;
}

int sd_text_condition_tower(sd_model *m, int tower, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting,
                            int clip_skip, int want_pooled, sd_cond *out, sd_err *err)
{
    memset(out, 0, sizeof *out);
    if (tower < 0 || tower >= m->n_text) return sd_errf(err, "the model has no text encoder %d", tower + 1);
    const sd_text_config *tc = &m->text[tower];
    sd_prompt_chunks ch;
    const sd_embeddings *E = m->embeddings;
    if (sd_prompt_chunk_words(t, prompt, tc->pad_id, weighting, E ? E->words : NULL, E ? E->n : 0, &ch, err))
        return -1;
    if (ch.n_chunks > 64) {
        int n = ch.n_chunks;
        sd_prompt_chunks_free(&ch);
        return sd_errf(err, "prompt too long: %d chunks of 75 tokens (at most 64)", n);
    }
    float *z = NULL, *pooled = NULL;
    int dim = 0;
    if (encode_chunks(m, tc, a, ch.tokens, ch.n_chunks, clip_skip, &z, &dim, want_pooled ? &pooled : NULL, err)) {
        sd_prompt_chunks_free(&ch);
        return -1;
    }
    size_t per = (size_t)SD_TOK_CONTEXT * (size_t)dim;
    /* Non-finite values never heal downstream (they end as a black image): stop here, naming the stage. */
    int64_t bad = sd_find_nonfinite(z, per * (size_t)ch.n_chunks);
    if (bad >= 0) {
        const char *kind = isnan(z[bad]) ? "NaN" : "Inf";
        sd_prompt_chunks_free(&ch);
        free(z);
        return sd_errf(err, "the text encoder produced a non-finite value (%s at element %lld): the model's "
                       "text-encoder weights are damaged or overflow float32 (--check-weights scans the weights)",
                       kind, (long long)bad);
    }
    float wmax = 0.0f;
    for (size_t i = 0; i < (size_t)ch.n_chunks * SD_TOK_CONTEXT; i++)
        if (fabsf(ch.weights[i]) > wmax) wmax = fabsf(ch.weights[i]);
    for (int c = 0; c < ch.n_chunks; c++) {
        const float *w = ch.weights + (size_t)c * SD_TOK_CONTEXT;
        int any = 0;
        for (int i = 0; i < SD_TOK_CONTEXT; i++) any |= w[i] != 1.0f;
        if (!any) continue; /* A1111's rescale is exactly ×1 here: keep the reference bits */
        float *zc = z + (size_t)c * per;
        float orig = mean_f(zc, per);
        for (int i = 0; i < SD_TOK_CONTEXT; i++)
            for (int d = 0; d < dim; d++) zc[(size_t)i * dim + d] *= w[i];
        float now = mean_f(zc, per);
        float r = orig / now;
        for (size_t i = 0; i < per; i++) zc[i] *= r;
    }
    bad = sd_find_nonfinite(z, per * (size_t)ch.n_chunks);
    if (bad >= 0) {
        /* A1111 (sd_emphasis.EmphasisOriginal) multiplies in float32 too and ends in NaN here. */
        const char *kind = isnan(z[bad]) ? "NaN" : "Inf";
        sd_prompt_chunks_free(&ch);
        free(z);
        return sd_errf(err, "the prompt weights (largest %g) overflow float32 in the text conditioning (%s at element "
                       "%lld); use smaller weights or fewer nested brackets", (double)wmax, kind, (long long)bad);
    }
    out->data = z;
    out->dim = dim;
    out->pooled = pooled;
    out->pooled_dim = pooled ? tc->proj_dim : 0;
    out->n_chunks = ch.n_chunks;
    out->n_text_tokens = ch.n_text_tokens;
    out->weighted = ch.weighted;
    sd_prompt_chunks_free(&ch);
    return 0;
}

int sd_text_condition(sd_model *m, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting,
                      int clip_skip, sd_cond *out, sd_err *err)
{
    return sd_text_condition_tower(m, 0, a, t, prompt, weighting, clip_skip, 0, out, err);
}

int sd_cond_match_length(sd_model *m, sd_arena *a, sd_tokenizer *t, int clip_skip, sd_cond_fn condition,
                         sd_cond *cond, sd_cond *uncond, sd_err *err)
{
    if (cond->n_chunks == uncond->n_chunks) return 0;
    if (cond->dim != uncond->dim) return sd_errf(err, "cond/uncond widths differ (%d vs %d)", cond->dim, uncond->dim);
    sd_cond *s = cond->n_chunks < uncond->n_chunks ? cond : uncond;
    int target = cond->n_chunks > uncond->n_chunks ? cond->n_chunks : uncond->n_chunks;
    sd_cond empty;
    if (condition(m, a, t, "", 1, clip_skip, &empty, err)) return -1;
    size_t per = (size_t)SD_TOK_CONTEXT * (size_t)s->dim;
    float *d = realloc(s->data, per * (size_t)target * sizeof *d);
    if (!d) { sd_cond_free(&empty); return sd_errcf(err, SD_ERR_NOMEM, "out of memory"); }
    for (int c = s->n_chunks; c < target; c++) memcpy(d + per * (size_t)c, empty.data, per * sizeof *d);
    s->data = d;
    s->padded_chunks += target - s->n_chunks;
    s->n_chunks = target;
    sd_cond_free(&empty);
    return 0;
}
