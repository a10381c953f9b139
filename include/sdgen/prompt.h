/* sdgen/prompt.h — AUTOMATIC1111 prompt syntax: attention weights, BREAK, 75-token chunks.
 *
 * sd_prompt_parse follows A1111 modules/prompt_parser.py parse_prompt_attention:
 *   (x) ×1.1, ((x)) ×1.21, [x] ÷1.1, (x:1.5) ×1.5, \( \) \[ \] \\ literal characters (a lone
 *   backslash is dropped), unbalanced brackets: an unmatched ")" or "]" is literal text, an
 *   unclosed "(" / "[" applies its ×1.1 / ÷1.1 to everything after it; "BREAK" (a whole word,
 *   with the whitespace around it) becomes a piece {"BREAK", -1}; runs of equal weight merge;
 *   an empty prompt gives one piece {"", 1}.
 *
 * sd_prompt_chunk follows A1111 modules/sd_hijack_clip.py tokenize_line + process_tokens: each
 * piece is tokenized on its own, tokens fill chunks of 75; when a chunk is full and a comma was
 * seen within its last 20 tokens (comma_padding_backtrack 20), the tokens after that comma move
 * to the next chunk; BREAK closes the current chunk. Each chunk is BOS + 75 (padded with EOS) +
 * EOS, weight 1 at BOS/EOS/padding; then (SD 2.x) every position after the chunk's first EOS
 * becomes pad_id. With weighting off the whole prompt is one piece of weight 1 (brackets and
 * BREAK literal) — long prompts are still chunked.
 */
#ifndef SDGEN_PROMPT_H
#define SDGEN_PROMPT_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_PROMPT_COMMA_BACKTRACK 20  /* A1111 opts.comma_padding_backtrack default */

typedef struct sd_prompt_piece {
    char *text;     /* UTF-8, owned */
    double weight;  /* product of the bracket multipliers; -1 with text "BREAK" = chunk break */
} sd_prompt_piece;

typedef struct sd_prompt_pieces {
    sd_prompt_piece *items;
    int n;
} sd_prompt_pieces;

/* Parse; fails (exit code 2) only on a weight A1111 cannot read either, e.g. "(a:1.2.3)". */
int sd_prompt_parse(const char *text, sd_prompt_pieces *out, sd_err *err);
void sd_prompt_pieces_free(sd_prompt_pieces *p);
int sd_prompt_piece_is_break(const sd_prompt_piece *p);

typedef struct sd_prompt_chunks {
    int n_chunks;
    int32_t *tokens;    /* n_chunks × 77 ids */
    float *weights;     /* n_chunks × 77 multipliers */
    int n_text_tokens;  /* tokens from the text (BREAKs excluded) */
    int token_count;    /* A1111's count: 75 per full chunk + the last chunk's length */
    int weighted;       /* some multiplier differs from 1 */
} sd_prompt_chunks;

/* weighting: 1 = parse the A1111 syntax, 0 = take the prompt literally (--no-weighting).
 * pad_id as in sd_tokenize (49407 SD 1.x, 0 SD 2.x). */
int sd_prompt_chunk(sd_tokenizer *t, const char *prompt, int pad_id, int weighting,
                    sd_prompt_chunks *out, sd_err *err);
void sd_prompt_chunks_free(sd_prompt_chunks *c);

/* A textual-inversion word (sdgen/embeddings.h): wherever a piece's tokens contain `ids`, they become
 * n_vectors pseudo-token ids first_id, first_id + 1, … (A1111 sd_hijack_clip tokenize_line with
 * EmbeddingDatabase.find_embedding_at_position: the longest match wins; a multi-vector embedding that
 * does not fit in the current chunk starts the next one). refuse: a message (the file cannot be used);
 * a prompt that uses the word fails with it. */
typedef struct sd_prompt_word {
    const int32_t *ids;
    int n_ids;
    int n_vectors;
    int32_t first_id;
    const char *refuse;
} sd_prompt_word;
/* sd_prompt_chunk with textual-inversion words (words may be NULL when n_words is 0). */
int sd_prompt_chunk_words(sd_tokenizer *t, const char *prompt, int pad_id, int weighting, const sd_prompt_word *words,
                          int n_words, sd_prompt_chunks *out, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
