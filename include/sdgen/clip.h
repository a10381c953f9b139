/* sdgen/clip.h — the text encoders: OpenAI CLIP ViT-L/14 (SD 1.x, HF CLIPTextModel names) and
 * OpenCLIP ViT-H/14 (SD 2.x, open_clip names), both addressed by their LDM names under
 * SD_PREFIX_CLIP / SD_PREFIX_OPENCLIP.
 *
 *     sd_tensor emb;
 *     if (sd_text_encode(&m, &arena, tokens, n_seq, clip_skip, &emb, &err)) ...
 *     ... emb is [n_seq, 77, D] in the arena (D = 768 for SD 1.x, 1024 for SD 2.x) ...
 */
#ifndef SDGEN_CLIP_H
#define SDGEN_CLIP_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The architecture of one tower from the shapes of its tensors. The family fills t->kind,
 * t->prefix, t->final_norm and t->penultimate first; the sizes, pad id and projection follow. */
int sd_text_derive(sd_model *m, sd_text_config *t, sd_err *err);
/* Every tensor the tower reads exists with the shape its architecture implies. */
int sd_text_check(const sd_model *m, const sd_text_config *t, sd_err *err);
/* Multiply-adds ×2 of encoding one 77-token sequence. */
double sd_text_flops(const sd_text_config *t);

/* Encode n_seq token sequences of 77 ids each with tower t (one of m->text[]).
 * tokens: n_seq × 77 ids, each checked against the vocabulary size.
 * clip_skip: AUTOMATIC1111 semantics. 1 (or 0) = the model's default output (SD 1.x: the last
 * layer; SD 2.x: the penultimate block, as the LDM FrozenOpenCLIPEmbedder). For SD 1.x CLIP,
 * N > 1 takes hidden_states[−N] (N−1 layers fewer) and then final_layer_norm; N larger than the
 * layer count is an error. For SD 2.x (OpenCLIP) A1111 does not use the setting (sd_hijack_open_clip
 * always takes the penultimate block), nor for SDXL (both towers' hidden_states[-2]), and neither
 * does sdgen: clip_skip is ignored there.
 * out: [n_seq, 77, D], allocated in the arena. pooled (NULL: not wanted; the tower needs a
 * text_projection): [n_seq, proj_dim]. Returns 0, or -1 with err filled (SD_ERR_INPUT for bad
 * tokens / missing weights, SD_ERR_NOMEM when the arena runs out). */
int sd_text_encode(sd_model *m, const sd_text_config *t, sd_arena *a, const int32_t *tokens, int n_seq, int clip_skip,
                   sd_tensor *out, sd_tensor *pooled, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
