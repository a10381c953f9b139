/* fuzz_lora.c — libFuzzer target: the LoRA prompt-tag parser (sd_lora_strip_tags, sd_lora_parse_arg),
 * the key mapper (sd_lora_parse_key + the name table of the golden tiny SD 1.x model) and a whole LoRA
 * file merged into that model and restored (sd_lora_apply).
 *
 * The input is cut at FUZZ_SEP (fuzz_util.h): part 0 is a prompt, part 1 tensor names one a line (each
 * also tried as a --lora argument), part 2 (when present) a LoRA .safetensors file. Checks: the tag
 * parser either fails with a one-line message or returns the text without its tags (unchanged when it
 * has none) and uses of finite weight; a parsed key has a canonical "unet/", "te1/" or "te2/"
 * module; a table hit names a weight of the model with rows inside it; a file is applied or refused
 * with a message naming it, and after restoring, no weight is patched.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sdgen/lora.h"
#include "sdgen/model.h"

#ifndef SDGEN_SHARED_DIR
#define SDGEN_SHARED_DIR "../shared"
#endif

static sd_model model;
static sd_lora_map map;
static sd_lora_state state;

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_lora: %s: \"%s\"\n", what, detail);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *shared = getenv("SDGEN_SHARED");
    if (!shared || !*shared) shared = SDGEN_SHARED_DIR;
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/models/tiny-sd1.safetensors", shared);
    sd_err err = {0};
    if (sd_model_open(&model, path, &err) || sd_lora_map_build(&model, &map, &err)) {
        fprintf(stderr, "fuzz_lora: %s\n", err.msg);
        abort();
    }
    return 0;
}

static void check_msg(const sd_err *e, const char *what)
{
    if (!e->msg[0] || (fuzz_one_line_check() && strchr(e->msg, '\n'))) fail(what, e->msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_part parts[FUZZ_MAX_PARTS];
    const int np = fuzz_split(data, size, parts);

    /* 0: prompt tags */
    char *text = malloc(parts[0].n + 1);
    memcpy(text, parts[0].p, parts[0].n);
    text[parts[0].n] = 0;
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    char *out = NULL;
    sd_err e = {0};
    if (sd_lora_strip_tags(text, &out, &l, &e)) {
        check_msg(&e, "tag error");
        if (out) fail("output on error", out);
    } else {
        /* one pass, as A1111's re.sub: text around a removed tag may join into a new "<lora:" (kept as text) */
        if (strlen(out) > strlen(text)) fail("text grew", out);
        if (l.n == 0 && strcmp(out, text)) fail("text changed without a tag", out);
        if (l.n > 0 && strlen(out) + 8 * (size_t)l.n > strlen(text)) fail("tags not removed", out);
        for (int i = 0; i < l.n; i++)
            if (!isfinite(l.items[i].scale) || !l.items[i].name[0] || strchr(l.items[i].name, '/'))
                fail("bad use", l.items[i].name);
    }
    free(out);
    sd_lora_list_free(&l);
    free(text);

    /* 1: keys and --lora arguments */
    if (np > 1) {
        char *names = malloc(parts[1].n + 1);
        memcpy(names, parts[1].p, parts[1].n);
        names[parts[1].n] = 0;
        for (char *s = names, *nl; s; s = nl) {
            nl = strchr(s, '\n');
            if (nl) *nl++ = 0;
            char mod[640];
            sd_lora_part part;
            if (sd_lora_parse_key(s, mod, sizeof mod, &part) == 0) {
                if (strncmp(mod, "unet/", 5) && strncmp(mod, "te1/", 4) && strncmp(mod, "te2/", 4))
                    fail("bad canonical module", mod);
                int k = sd_lora_map_find(&map, mod);
                if (k >= 0) {
                    const sd_lora_target *t = &map.targets[k];
                    if (t->weight < 0 || t->weight >= model.n_weights || t->row0 < 0 || t->rows < 1 ||
                        t->row0 + t->rows > model.weights[t->weight].shape[0])
                        fail("bad target", mod);
                }
            }
            sd_lora_list a;
            memset(&a, 0, sizeof a);
            sd_err ae = {0};
            if (sd_lora_parse_arg(s, &a, &ae)) check_msg(&ae, "--lora error");
            sd_lora_list_free(&a);
        }
        free(names);
    }

    /* 2: a LoRA file */
    if (np > 2) {
        char path[1024];
        fuzz_write("lora.safetensors", parts[2].p, parts[2].n, path, sizeof path);
        sd_lora_list f;
        memset(&f, 0, sizeof f);
        sd_err fe = {0};
        sd_lora_list_add(&f, "lora", path, 0.75, &fe);
        if (sd_lora_apply(&state, &model, &f, &fe)) {
            check_msg(&fe, "apply error");
            if (!strstr(fe.msg, path) && fe.code != SD_ERR_NOMEM) fail("message without the file", fe.msg);
            if (state.n_patched) fail("weights left patched after a failure", fe.msg);
        }
        sd_lora_list_free(&f);
        if (sd_lora_apply(&state, &model, &f, &fe) || state.n_patched) fail("restore", fe.msg);
    }
    return 0;
}
