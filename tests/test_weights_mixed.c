/* test_weights_mixed.c — files whose tensors mix dtypes (F16 text layers, BF16 VAE norms and
 * biases, the rest F32, as some converters and fine-tune tools write them) give the same tensors and
 * the same PNG with the default weights path as with --weights f32. The file is made here from the
 * tiny SD 1.x model. Such a file once broke the default path: its per-use conversion buffer was
 * sized from the largest non-F32 tensor, so a layer that fetched more small tensors than it held
 * overwrote the first ones before they were read. */
#include <cjson/cJSON.h>

#include "sdgen/safetensors.h"
#include "weights_modes.h"

/* F32 -> BF16 by truncation (any rounding would do: the file defines the weights). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* The dtype a tensor gets in the mixed file: 'h' F16, 'b' BF16, 'f' F32. */
static char mixed_kind(const sd_st_tensor *t)
{
    if (!strncmp(t->name, "cond_stage_model.", 17) && (strstr(t->name, ".layers.") || strstr(t->name, ".resblocks.")))
        return 'h';
    if (!strncmp(t->name, "first_stage_model.", 18) && t->ndim == 1) return 'b';
    return 'f';
}

static int write_mixed(const char *from, const char *to)
{
    sd_safetensors st;
    sd_err err = {0};
    if (sd_st_open(&st, from, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    cJSON *h = cJSON_CreateObject();
    size_t total = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const sd_st_tensor *t = &st.tensors[i];
        const char kind = mixed_kind(t);
        const int text = kind == 'h', vae = kind == 'b';
        const char *dt = t->dtype != SD_DT_F32 ? sd_dtype_name(t->dtype) : text ? "F16" : vae ? "BF16" : "F32";
        const size_t bytes = (size_t)t->numel * (t->dtype != SD_DT_F32 ? sd_dtype_size(t->dtype) : text || vae ? 2 : 4);
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", dt);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)total));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(total + bytes)));
        total += bytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(to, "wb");
    int rc = f ? 0 : -1;
    if (f) {
        uint64_t le = hl + pad;
        fwrite(&le, 8, 1, f);
        fwrite(js, 1, hl, f);
        for (size_t k = 0; k < pad; k++) fputc(' ', f);
        float *buf = NULL;
        size_t cap = 0;
        for (int i = 0; i < st.n_tensors && rc == 0; i++) {
            const sd_st_tensor *t = &st.tensors[i];
            if (t->dtype != SD_DT_F32) {
                fwrite(sd_st_data(&st, t), 1, (size_t)(t->end - t->begin), f);
                continue;
            }
            if ((size_t)t->numel > cap) {
                cap = (size_t)t->numel;
                buf = realloc(buf, cap * sizeof *buf);
            }
            if (sd_st_read_f32(&st, t, buf, &err)) rc = -1;
            const char kind = mixed_kind(t);
            const int text = kind == 'h', vae = kind == 'b';
            for (int64_t k = 0; k < t->numel && rc == 0; k++) {
                if (text || vae) {
                    uint16_t v = text ? sd_f32_to_f16_1(buf[k]) : to_bf16(buf[k]);
                    fwrite(&v, 2, 1, f);
                } else {
                    fwrite(&buf[k], 4, 1, f);
                }
            }
        }
        free(buf);
        if (fclose(f)) rc = -1;
    }
    cJSON_free(js);
    cJSON_Delete(h);
    sd_st_close(&st);
    return rc;
}

int main(void)
{
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen) TEST_MAIN_END();
    char mixed[4096];
    snprintf(mixed, sizeof mixed, "%s/tiny-sd1-mixed.safetensors", sd_test_tmp());
    int rc = write_mixed(sd_test_path("golden/models/tiny-sd1.safetensors"), mixed);
    CHECK(rc == 0, "could not write %s", mixed);
    if (rc) TEST_MAIN_END();
    static const char *const opts[] = {"-p", "a (red:1.2) bicycle, brick wall", "-n", "blurry", "-W", "64", "-H", "64",
                                       "--steps", "3", "--sampler", "euler_a", "--seed", "7", NULL};
    compare_weight_modes(sdgen, mixed, "weights-mixed", opts, 0);
    /* img2img reads the VAE encoder too */
    char init[4200];
    snprintf(init, sizeof init, "%s", sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/init.png"));
    static const char *opts2[] = {"-p", "a watercolor harbor", "-i", NULL, "--strength", "0.6", "--steps", "4",
                                  "--sampler", "ddim", "--seed", "3", NULL};
    opts2[3] = init;
    compare_weight_modes(sdgen, mixed, "weights-mixed-img2img", opts2, 0);
    /* tiled decode (576 px wide: two tile columns) */
    static const char *const opts3[] = {"-p", "a lighthouse", "-W", "576", "-H", "64", "--steps", "1", "--vae-tiling",
                                        "--seed", "11", NULL};
    compare_weight_modes(sdgen, mixed, "weights-mixed-tiled", opts3, 0);
    TEST_MAIN_END();
}
