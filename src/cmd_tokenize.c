/* cmd_tokenize.c — `sdgen tokenize [--vocab PATH] [--family sd1|sd2] [--chunks] [--no-weighting] TEXT`.
 *
 * Without --chunks: the 77 ids the reference pipelines feed the text encoder (transformers
 * CLIPTokenizer with padding="max_length", truncation=True: brackets literal, over-long text cut
 * with EOS kept last; SD 1.x pads with EOS 49407, SD 2.x with 0). With --chunks: one line of 77
 * ids per chunk, as the generator encodes the prompt (A1111 weights parsed unless --no-weighting,
 * 75-token chunks with comma backtracking, BREAK).
 * Exit codes: 0 ok, 2 bad arguments or vocabulary (one-line error on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/prompt.h"
#include "sdgen/tokenizer.h"

#include "commands.h"

static int usage_err(const char *fmt, const char *arg)
{
    char what[1024];
    snprintf(what, sizeof what, fmt, arg);
    sd_cli_say("sdgen tokenize",
               "%s (usage: sdgen tokenize [--vocab PATH] [--family sd1|sd2] [--chunks] [--no-weighting] TEXT)", what);
    return SD_EXIT_INPUT;
}

static void print_ids(const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
}

int sd_cmd_tokenize(int argc, char **argv)
{
    const char *vocab = NULL, *family = "sd1", *text = NULL;
    int chunks = 0, weighting = 1, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--")) { opts_done = 1; continue; }
            if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                printf("usage: sdgen tokenize [--vocab PATH] [--family sd1|sd2] [--chunks] [--no-weighting] TEXT\n"
                       "  prints the 77 CLIP token ids of TEXT (reference tokenizer: brackets literal, truncated to 75 tokens);\n"
                       "  --chunks prints one 77-id line per chunk as the generator encodes the prompt (A1111 weights, BREAK,\n"
                       "  75-token chunks); --no-weighting takes brackets literally there too.\n"
                       "  The vocabulary: --vocab PATH, $SDGEN_VOCAB, or the install data folder.\n");
                return 0;
            }
            if (!strcmp(a, "--chunks")) { chunks = 1; continue; }
            if (!strcmp(a, "--no-weighting")) { weighting = 0; continue; }
            if (!strcmp(a, "--vocab") || !strcmp(a, "--family")) {
                if (i + 1 >= argc) return usage_err("%s needs a value", a);
                if (a[2] == 'v') vocab = argv[++i]; else family = argv[++i];
                continue;
            }
            if (!strncmp(a, "--vocab=", 8)) { vocab = a + 8; continue; }
            if (!strncmp(a, "--family=", 9)) { family = a + 9; continue; }
            return usage_err("unknown option %s", a);
        }
        if (text) return usage_err("more than one TEXT argument (quote the prompt): %s", a);
        text = a;
    }
    if (!text) return usage_err("%s", "missing TEXT");
    int sd2;
    if (!strcmp(family, "sd1")) sd2 = 0;
    else if (!strcmp(family, "sd2")) sd2 = 1;
    else return usage_err("--family must be sd1 or sd2, not \"%s\"", family);

    sd_err err = {0};
    sd_tokenizer *tok;
    sd_vocab_search s = {0};
    s.cli_path = vocab;
    if (sd_tokenizer_find(&tok, &s, &err)) {
        sd_cli_say("sdgen tokenize", "%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    int pad = sd2 ? SD_TOK_SD2_PAD : sd_tokenizer_eos(tok);
    int rc = 0;
    if (!chunks) {
        int32_t ids[SD_TOK_CONTEXT];
        int n, trunc;
        if (sd_tokenize_77(tok, text, pad, ids, &n, &trunc, &err)) rc = -1;
        else {
            print_ids(ids, SD_TOK_CONTEXT);
            if (trunc)
                fprintf(stderr, "sdgen tokenize: note: %d tokens, truncated to %d as the reference tokenizer does "
                        "(the generator splits long prompts into chunks instead: see --chunks)\n", n, SD_TOK_CHUNK);
        }
    } else {
        sd_prompt_chunks ch;
        if (sd_prompt_chunk(tok, text, pad, weighting, &ch, &err)) rc = -1;
        else {
            for (int c = 0; c < ch.n_chunks; c++) print_ids(ch.tokens + (size_t)c * SD_TOK_CONTEXT, SD_TOK_CONTEXT);
            if (ch.n_chunks > 1)
                fprintf(stderr, "sdgen tokenize: note: %d tokens, split into %d chunks of up to %d\n",
                        ch.n_text_tokens, ch.n_chunks, SD_TOK_CHUNK);
            sd_prompt_chunks_free(&ch);
        }
    }
    sd_tokenizer_free(tok);
    if (rc) {
        sd_cli_say("sdgen tokenize", "%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "sdgen tokenize: cannot write the output\n");
        return SD_EXIT_INPUT;
    }
    return 0;
}
