/* fuzz_prompt.c — libFuzzer target: the A1111 prompt-weight parser (sd_prompt_parse) and the
 * 75-token chunker (sd_prompt_chunk) with the real CLIP vocabulary, which also drives the
 * tokenizer's text clean-up and BPE over arbitrary bytes.
 *
 * First byte: bit 0 = weighting on, bit 1 = SD 2.x padding (pad id 0); the rest is the prompt
 * (NUL-terminated copy). The vocabulary is loaded once from $SDGEN_SHARED/clip (or the CMake-time
 * shared folder). Checks: pieces have text and a finite weight or are BREAK; chunks are whole
 * 77-token rows starting with BOS; ids are vocabulary ids; failures carry a message.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sdgen/prompt.h"
#include "sdgen/tokenizer.h"

#ifndef SDGEN_SHARED_DIR
#define SDGEN_SHARED_DIR "../shared"
#endif

static sd_tokenizer *tok;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_prompt: %s\n", what);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *shared = getenv("SDGEN_SHARED");
    if (!shared || !*shared) shared = SDGEN_SHARED_DIR;
    char path[1024];
    snprintf(path, sizeof path, "%s/clip", shared);
    sd_err err = {0};
    if (sd_tokenizer_load(&tok, path, &err)) {
        fprintf(stderr, "fuzz_prompt: cannot load the CLIP vocabulary: %s\n", err.msg);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int weighting = data[0] & 1;
    int pad_id = (data[0] & 2) ? SD_TOK_SD2_PAD : SD_TOK_SD1_PAD;
    char *text = fuzz_strndup(data + 1, size - 1);

    sd_prompt_pieces pieces = {0};
    sd_err err = {0};
    if (sd_prompt_parse(text, &pieces, &err) == 0) {
        if (pieces.n < 1) fail("parse gave no piece");
        for (int i = 0; i < pieces.n; i++) {
            if (!pieces.items[i].text) fail("piece without text");
            if (sd_prompt_piece_is_break(&pieces.items[i])) continue;
            if (isnan(pieces.items[i].weight)) fail("NaN weight");
        }
    } else if (!err.msg[0] || err.code != SD_ERR_INPUT) {
        fail("parse failed without a message / with a code other than 2");
    }
    sd_prompt_pieces_free(&pieces);

    sd_prompt_chunks ch = {0};
    memset(&err, 0, sizeof err);
    if (sd_prompt_chunk(tok, text, pad_id, weighting, &ch, &err) == 0) {
        if (ch.n_chunks < 1) fail("no chunk");
        int vs = sd_tokenizer_vocab_size(tok);
        for (int c = 0; c < ch.n_chunks; c++) {
            const int32_t *row = ch.tokens + (size_t)c * SD_TOK_CONTEXT;
            if (row[0] != sd_tokenizer_bos(tok)) fail("chunk does not start with BOS");
            for (int k = 0; k < SD_TOK_CONTEXT; k++)
                if (row[k] < 0 || row[k] >= vs) fail("id outside the vocabulary");
        }
    } else if (!err.msg[0]) {
        fail("chunk failed without a message");
    }
    sd_prompt_chunks_free(&ch);
    free(text);
    return 0;
}
