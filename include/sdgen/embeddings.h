/* sdgen/embeddings.h — textual-inversion embeddings, as A1111 users keep them (docs/LORA.md).
 *
 * Every file of the embeddings folder is a word: its file name without extension. Where a prompt's
 * tokens contain the word's tokens, the word becomes the embedding's vectors, one token position each
 * (A1111 modules/textual_inversion: EmbeddingDatabase, sd_hijack_clip.tokenize_line). Files read:
 * .safetensors with one tensor [n, D] or [D] (kohya's "emb_params", A1111's "string_to_param.*", any
 * single name) or SDXL's pair "clip_l" [n, 768] / "clip_g" [n, 1280]. A .pt / .bin file is a PyTorch
 * pickle: using its word fails with a message to convert it. A file that cannot be used (bad shape,
 * NaN, too many vectors) fails only the prompts that use its word.
 *
 * In the token ids the vectors are pseudo-ids SD_EMB_ID_BASE + row; the text encoder (clip.c) takes row
 * `row` of the set's table for its tower instead of a vocabulary row.
 */
#ifndef SDGEN_EMBEDDINGS_H
#define SDGEN_EMBEDDINGS_H

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/prompt.h"
#include "sdgen/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_EMB_ID_BASE (1 << 24)   /* above every CLIP vocabulary (49408) */
#define SD_EMB_MAX_FILES 4096
#define SD_EMB_MAX_VECTORS 75      /* one chunk */

typedef struct sd_embeddings {
    int n;                        /* words */
    sd_prompt_word *words;        /* ids and refuse messages owned */
    char **names;                 /* the words (file names without extension) */
    int n_rows;                   /* vectors of all usable files */
    float *rows[SD_MAX_TEXT];     /* per text tower: n_rows × width */
    int width[SD_MAX_TEXT];
} sd_embeddings;

/* Read every embedding file of dir for model m (tokenized with t). A missing folder is an empty set. */
int sd_embeddings_load(sd_embeddings *e, const sd_model *m, sd_tokenizer *t, const char *dir, sd_err *err);
void sd_embeddings_free(sd_embeddings *e);

#ifdef __cplusplus
}
#endif
#endif
