/* sdgen/cond.h — prompt → text conditioning, as AUTOMATIC1111 builds it.
 *
 *     sd_tokenizer *tok;  sd_cond c = {0}, uc = {0};
 *     sd_tokenizer_for_model(&tok, &m, cli_vocab, &err);
 *     sd_text_condition(&m, &arena, tok, prompt, 1, clip_skip, &c, &err);
 *     sd_text_condition(&m, &arena, tok, negative, 1, clip_skip, &uc, &err);
 *     sd_cond_match_length(&m, &arena, tok, clip_skip, sd_text_condition, &c, &uc, &err);  // same 77·k length
 *     ... sd_cond_tensor(&c) is [1, 77·k, D] ...
 *     sd_cond_free(&c); sd_cond_free(&uc);
 *
 * The prompt is parsed and chunked (prompt.h), every chunk goes through the text encoder
 * (clip.h), each token's embedding is multiplied by its weight and, in chunks that carry a
 * weight other than 1, the result is rescaled to keep the chunk's original mean (A1111
 * sd_emphasis.EmphasisOriginal: z *= original_mean / new_mean). Chunks with all weights 1 are
 * left untouched, so a plain prompt of at most 75 tokens gives exactly the reference embedding.
 * The conditioning is malloc'd (it outlives arena resets); the encoder's scratch stays in the
 * arena until the caller resets it.
 */
#ifndef SDGEN_COND_H
#define SDGEN_COND_H

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/tensor.h"
#include "sdgen/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_cond {
    float *data;        /* [1, 77·n_chunks, dim], owned (malloc) */
    int n_chunks;
    int dim;
    float *pooled;      /* [pooled_dim] pooled text vector (SDXL's second encoder), owned; NULL: none */
    int pooled_dim;
    float *vec;         /* [vec_dim] the denoiser's extra conditioning vector (SDXL: pooled + size ids), owned */
    int vec_dim;
    int n_text_tokens;  /* tokens the prompt produced */
    int weighted;       /* some token had a weight other than 1 */
    int padded_chunks;  /* empty-prompt chunks appended by sd_cond_match_length */
} sd_cond;

/* Tokenizer for model m: --vocab (cli_vocab, may be NULL), $SDGEN_VOCAB, the model's own
 * merges (metadata "sdgen.bpe_merges"), its tokenizer/ folder, a vocabulary beside a single
 * file, the install data folder (tokenizer.h sd_tokenizer_find). */
int sd_tokenizer_for_model(sd_tokenizer **out, const sd_model *m, const char *cli_vocab, sd_err *err);

/* A conditioner: prompt → conditioning (the families' `condition`). */
typedef int (*sd_cond_fn)(sd_model *m, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting, int clip_skip,
                          sd_cond *out, sd_err *err);

/* The prompt through text tower m->text[tower] (padded with its pad id): weighting 1 = A1111 syntax,
 * 0 = literal (--no-weighting); clip_skip as sd_text_encode; want_pooled: also the first chunk's
 * pooled vector (the tower needs a text_projection). */
int sd_text_condition_tower(sd_model *m, int tower, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting,
                            int clip_skip, int want_pooled, sd_cond *out, sd_err *err);
/* The single-encoder conditioner of SD 1.x/2.x: tower 0, no pooled vector. */
int sd_text_condition(sd_model *m, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting,
                      int clip_skip, sd_cond *out, sd_err *err);

/* Make cond and uncond the same number of chunks, as A1111's CFGDenoiser.pad_cond_uncond: the
 * shorter one gets the encoding of the empty prompt (BOS, EOS, padding) appended once per
 * missing chunk. No-op when they already match. */
int sd_cond_match_length(sd_model *m, sd_arena *a, sd_tokenizer *t, int clip_skip, sd_cond_fn condition,
                         sd_cond *cond, sd_cond *uncond, sd_err *err);

/* View [1, 77·n_chunks, dim] over c->data. */
sd_tensor sd_cond_tensor(const sd_cond *c);
void sd_cond_free(sd_cond *c);

#ifdef __cplusplus
}
#endif
#endif
