/* fuzz_tokenizer.c — libFuzzer target: the BPE vocabulary / merges loaders
 * (sd_tokenizer_from_merges, sd_tokenizer_load) and BPE encoding with whatever they accept.
 *
 * The first byte picks the form, the rest is the content:
 *   0  merges text in memory (a model's "sdgen.bpe_merges" metadata)     sd_tokenizer_from_merges
 *   1  a lone merges.txt file (the CLIP construction)                    sd_tokenizer_load(file)
 *   2  vocab.json FUZZ_SEP merges.txt in a folder (transformers' pair)   sd_tokenizer_load(folder)
 *   3  the bytes as bpe_simple_vocab_16e6.txt.gz (gzip or not)           sd_tokenizer_load(file)
 * A loaded tokenizer encodes a few fixed prompts and the input's own text; every id it emits
 * must be a vocabulary id. Failures must carry a message (exit code 2, or 3 for memory).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sdgen/tokenizer.h"

static void fail(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_tokenizer: %s: %s\n", what, msg);
    abort();
}

static void exercise(sd_tokenizer *t, const uint8_t *text, size_t n)
{
    int vs = sd_tokenizer_vocab_size(t);
    int bos = sd_tokenizer_bos(t), eos = sd_tokenizer_eos(t);
    if (bos < 0 || bos >= vs || eos < 0 || eos >= vs) fail("bos/eos", "outside the vocabulary");
    (void)sd_tokenizer_comma(t);
    (void)sd_tokenizer_token_str(t, 0);
    (void)sd_tokenizer_token_str(t, vs - 1);
    (void)sd_tokenizer_token_str(t, vs);
    char *own = fuzz_strndup(text, n > 512 ? 512 : n);
    const char *prompts[] = {"a photo of a cat, highly detailed!!", "Straße café 東京 😀 don't", "", own};
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        for (int pad = 0; pad < 2; pad++) {
            int pad_id = pad ? eos : 0;
            sd_tokens toks = {0};
            sd_err err = {0};
            if (sd_tokenize(t, prompts[i], pad_id, &toks, &err) == 0) {
                for (int k = 0; k < toks.n; k++)
                    if (toks.ids[k] < 0 || toks.ids[k] >= vs) fail("sd_tokenize", "id outside the vocabulary");
            } else if (!err.msg[0]) {
                fail("sd_tokenize", "failed without a message");
            }
            sd_tokens_free(&toks);
            int32_t ids[SD_TOK_CONTEXT];
            int nt = 0, tr = 0;
            memset(&err, 0, sizeof err);
            if (sd_tokenize_77(t, prompts[i], pad_id, ids, &nt, &tr, &err) == 0) {
                if (ids[0] != bos) fail("sd_tokenize_77", "first id is not BOS");
            } else if (!err.msg[0]) {
                fail("sd_tokenize_77", "failed without a message");
            }
        }
    }
    free(own);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] & 3;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    sd_tokenizer *t = NULL;
    sd_err err = {0};
    int rc;
    char path[1024];
    switch (mode) {
    case 0: rc = sd_tokenizer_from_merges(&t, (const char *)p, n, "fuzz merges", &err); break;
    case 1:
        fuzz_write("m1/merges.txt", p, n, path, sizeof path);
        rc = sd_tokenizer_load(&t, path, &err);
        break;
    case 2: {
        fuzz_part parts[FUZZ_MAX_PARTS];
        int np = fuzz_split(p, n, parts);
        fuzz_write("m2/vocab.json", parts[0].p, parts[0].n, NULL, 0);
        if (np > 1) fuzz_write("m2/merges.txt", parts[1].p, parts[1].n, path, sizeof path);
        else fuzz_unlink("m2/merges.txt");
        snprintf(path, sizeof path, "%s/m2", fuzz_dir());
        rc = sd_tokenizer_load(&t, path, &err);
        break;
    }
    default:
        fuzz_write("m3/bpe_simple_vocab_16e6.txt.gz", p, n, path, sizeof path);
        rc = sd_tokenizer_load(&t, path, &err);
        break;
    }
    if (rc != 0) {
        if (!err.msg[0] || (fuzz_one_line_check() && strchr(err.msg, '\n')) || (err.code != SD_ERR_INPUT && err.code != SD_ERR_NOMEM)) fail("load", err.msg);
        if (t) fail("load", "failed but returned a tokenizer");
        return 0;
    }
    exercise(t, p, n);
    sd_tokenizer_free(t);
    return 0;
}
