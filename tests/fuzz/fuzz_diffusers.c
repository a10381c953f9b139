/* fuzz_diffusers.c — libFuzzer target: the diffusers folder reader (src/diffusers.c: the
 * config.json files, the tensor-name translation to the LDM layout) and sd_model_open on the folder.
 *
 * The input is cut at FUZZ_SEP (fuzz_util.h) into up to six parts, written as
 *   0 unet/config.json  1 vae/config.json  2 text_encoder/config.json
 *   3 scheduler/scheduler_config.json  4 tokenizer/special_tokens_map.json
 *   5 tensor names, one a line, each translated by sd_diffusers_ldm_name for every component;
 * parts past the end are absent files. The weight files are the golden tiny-cfg model's
 * (symlinked once from $SDGEN_SHARED/golden/models/tiny-cfg, or the CMake-time shared folder),
 * so a config that matches them opens and a config that doesn't must be refused cleanly:
 * message naming a file of the folder, exit code 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusers.h"
#include "fuzz_util.h"
#include "sdgen/model.h"

#ifndef SDGEN_SHARED_DIR
#define SDGEN_SHARED_DIR "../shared"
#endif

static const char *const files[] = {"unet/config.json", "vae/config.json", "text_encoder/config.json",
                                    "scheduler/scheduler_config.json", "tokenizer/special_tokens_map.json"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *shared = getenv("SDGEN_SHARED");
    if (!shared || !*shared) shared = SDGEN_SHARED_DIR;
    static const char *const weights[] = {"unet/diffusion_pytorch_model.safetensors",
                                          "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s/golden/models/tiny-cfg/%s", shared, weights[i]);
        fuzz_write(weights[i], (const uint8_t *)"", 0, dst, sizeof dst); /* makes the sub-folder */
        unlink(dst);
        if (symlink(src, dst) != 0) perror(dst);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_part parts[FUZZ_MAX_PARTS];
    int np = fuzz_split(data, size, parts);
    for (int i = 0; i < 5; i++) {
        if (i < np) fuzz_write(files[i], parts[i].p, parts[i].n, NULL, 0);
        else fuzz_unlink(files[i]);
    }
    const char *dir = fuzz_dir();

    sd_model m;
    sd_err err = {0};
    if (sd_model_open(&m, dir, &err) != 0) {
        if (!err.msg[0] || !strstr(err.msg, dir) || (fuzz_one_line_check() && strchr(err.msg, '\n')) ||
            (err.code != SD_ERR_INPUT && err.code != SD_ERR_NOMEM)) {
            fprintf(stderr, "fuzz_diffusers: bad error (code %d): \"%s\"\n", err.code, err.msg);
            abort();
        }
    } else {
        /* an accepted folder serves its weights */
        for (int i = 0; i < m.n_weights; i += 97) {
            sd_tensor w;
            sd_err e2 = {0};
            if (sd_model_weight(&m, NULL, m.weights[i].name, &w, &e2) != 0) {
                fprintf(stderr, "fuzz_diffusers: weight %s: %s\n", m.weights[i].name, e2.msg);
                abort();
            }
        }
        sd_model_close(&m);
    }

    /* name translation with the layout the configs give */
    if (np > 5) {
        sd_model cfg;
        memset(&cfg, 0, sizeof cfg);
        sd_diffusers_layout lay;
        sd_err e3 = {0};
        if (sd_diffusers_read_configs(dir, &cfg, &lay, &e3) != 0) memset(&lay, 0, sizeof lay);
        char *names = fuzz_strndup(parts[5].p, parts[5].n);
        int lines = 0;
        for (char *line = strtok(names, "\n"); line && lines < 64; line = strtok(NULL, "\n"), lines++) {
            static const char *const comps[] = {"unet", "vae", "text_encoder"};
            for (int c = 0; c < 3; c++) {
                char out[1024];
                int conv = 0;
                if (sd_diffusers_ldm_name(comps[c], line, &lay, out, sizeof out, &conv) == 0 && strlen(out) >= sizeof out - 1) {
                    fprintf(stderr, "fuzz_diffusers: translated name fills the buffer\n");
                    abort();
                }
            }
        }
        free(names);
    }
    return 0;
}
