/* sdgen/tokenizer.h — the CLIP byte-level BPE tokenizer used by every SD 1.x / 2.x text encoder.
 *
 * Matches transformers' slow CLIPTokenizer as the SD pipelines load it without ftfy (the golden
 * ids, docs/SEMANTICS.md §2): BasicTokenizer clean-up (control characters dropped,
 * whitespace collapsed, CJK ideographs spaced out, NFC, lower-case), the CLIP pre-tokenising
 * pattern  <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * with Unicode letter/number classes, bytes_to_unicode, BPE with "</w>" by merge rank.
 *
 *     sd_tokenizer *tok; sd_err err;
 *     if (sd_tokenizer_load(&tok, "../shared/clip", &err)) ...       // file or folder
 *     int32_t ids[77]; int n, trunc;
 *     sd_tokenize_77(tok, "a photo of a cat", 49407, ids, &n, &trunc, &err);
 *     sd_tokenizer_free(tok);
 *
 * pad_id selects the family: 49407 (= EOS) for SD 1.x; 0 for SD 2.x, whose reference tokenizer
 * has "!" (id 0) as its pad token — a special token, so every "!" in the prompt is split off
 * as id 0 instead of being BPE-encoded (docs/SEMANTICS.md §2.5). Generally: when pad_id is an
 * ordinary vocabulary entry, its text is treated as a special token, as transformers does.
 *
 * A tokenizer is not thread-safe (it keeps a BPE cache).
 */
#ifndef SDGEN_TOKENIZER_H
#define SDGEN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_TOK_CONTEXT 77      /* positions of the CLIP text encoder */
#define SD_TOK_CHUNK 75        /* text tokens between BOS and EOS */
#define SD_TOK_SD1_PAD 49407
#define SD_TOK_SD2_PAD 0

typedef struct sd_tokenizer sd_tokenizer;

/* A growable list of token ids. Zero-initialise; free with sd_tokens_free. */
typedef struct sd_tokens {
    int32_t *ids;
    int n, cap;
} sd_tokens;
void sd_tokens_free(sd_tokens *t);

/* Load a vocabulary from PATH: bpe_simple_vocab_16e6.txt.gz (or any gzip/plain CLIP merges list:
 * header line, then one merge a line; the vocabulary is built the CLIP way), a vocab.json or
 * merges.txt (its partner file beside it; a merges.txt alone gets the CLIP construction), or a
 * folder holding one of these forms (or a tokenizer/ sub-folder). Sizes are bounded; errors name
 * the file. */
int sd_tokenizer_load(sd_tokenizer **out, const char *path, sd_err *err);

/* Build from a merges list held in memory (e.g. a model's "sdgen.bpe_merges" metadata): an
 * optional header line (starting with '#' or '"'), then "a b" merge lines (blank lines skipped; at
 * most the first 49152-256-2 = 48894 merges are used, as CLIP does). The vocabulary is the
 * CLIP construction: 256 byte symbols, the same + "</w>", every merge joined, then
 * <|startoftext|>, <|endoftext|> (so BOS/EOS are the last two ids). `what` names the source in
 * error messages. */
int sd_tokenizer_from_merges(sd_tokenizer **out, const char *text, size_t len, const char *what,
                             sd_err *err);

void sd_tokenizer_free(sd_tokenizer *t);

int sd_tokenizer_bos(const sd_tokenizer *t);        /* <|startoftext|>: 49406 for CLIP */
int sd_tokenizer_eos(const sd_tokenizer *t);        /* <|endoftext|>: 49407 for CLIP */
int sd_tokenizer_vocab_size(const sd_tokenizer *t); /* 1 + largest id */
int sd_tokenizer_comma(const sd_tokenizer *t);      /* id of ",</w>" (267), -1 if absent */
/* Token string of an id in the vocabulary's own (byte-mapped) spelling, or NULL. */
const char *sd_tokenizer_token_str(const sd_tokenizer *t, int id);
/* Where it was loaded from (path, or the `what` of sd_tokenizer_from_merges). */
const char *sd_tokenizer_source(const sd_tokenizer *t);

/* BPE ids of TEXT (UTF-8; invalid bytes are dropped), no BOS/EOS, no truncation: transformers'
 * tokenizer(text, add_special_tokens=False).input_ids. Appended to *out. TEXT is at most 32 KiB
 * (BPE cost grows with the square of a word's length); longer is an error. */
int sd_tokenize(sd_tokenizer *t, const char *text, int pad_id, sd_tokens *out, sd_err *err);

/* What the pipelines feed the encoder: BOS, up to 75 tokens, EOS, then pad_id up to 77.
 * n_tokens (may be NULL): the text's token count before truncation; truncated (may be NULL):
 * set to 1 when tokens were cut. */
int sd_tokenize_77(sd_tokenizer *t, const char *text, int pad_id, int32_t out[SD_TOK_CONTEXT],
                   int *n_tokens, int *truncated, sd_err *err);

/* ---- finding the vocabulary ----
 * Order: cli_path (--vocab), $SDGEN_VOCAB, the model's own merges (embedded_merges,
 * from its "sdgen.bpe_merges" metadata), a diffusers folder's tokenizer/ (tokenizer_dir), a
 * vocabulary file or tokenizer/ folder beside a single-file checkpoint (model_path), then the
 * install data folder (SDGEN_DATA_DIR and SDGEN_DATA_DIR/clip). A location that is named
 * explicitly (cli_path, $SDGEN_VOCAB) and fails to load is an error, not skipped. When nothing is
 * found the error lists every place tried and how to get the file. */
typedef struct sd_vocab_search {
    const char *cli_path;        /* --vocab or NULL */
    const char *model_path;      /* checkpoint file or diffusers folder, or NULL */
    int model_is_folder;
    const char *tokenizer_dir;   /* diffusers tokenizer/ folder or NULL */
    const char *embedded_merges; /* merges text from the model, or NULL */
} sd_vocab_search;
int sd_tokenizer_find(sd_tokenizer **out, const sd_vocab_search *s, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
