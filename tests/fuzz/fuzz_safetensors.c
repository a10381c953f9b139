/* fuzz_safetensors.c — libFuzzer target: the safetensors header/offset parser (sd_st_open) and,
 * when a file passes, the model layer on top of it (sd_model_open: family, architecture from
 * shapes, required-tensor checks) and the dtype conversions.
 *
 * The input is the whole file, with one exception that lets small inputs reach the model layer:
 * an input starting with 'Z' is "header only": the bytes after the 'Z' (8-byte length + JSON) are
 * written and the file is then extended with zeros up to the largest data_offsets end the JSON
 * mentions (at most 64 MiB; sparse, so cheap). The parser still sees an ordinary, complete file.
 * Seeds of that form are the golden tiny models' headers. Besides "no crash, no sanitizer report", the target checks what
 * the loader promises (include/sdgen/safetensors.h): a failure has a one-line message that names
 * the file and exit code 2 (or 3 for memory); an accepted file has every tensor inside the data
 * area, byte span = numel × dtype size, no two non-empty tensors sharing a byte, and every
 * name findable. A broken promise aborts, so libFuzzer records it as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "sdgen/model.h"
#include "sdgen/safetensors.h"

#define FUZZ_CHECK(cond, ...)                                                                                     \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            fprintf(stderr, "fuzz_safetensors: broken promise: " __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                                                                \
            abort();                                                                                              \
        }                                                                                                         \
    } while (0)

static void check_error(const sd_err *err, const char *path)
{
    FUZZ_CHECK(err->msg[0], "empty error message");
    FUZZ_CHECK(strstr(err->msg, path) != NULL, "message does not name the file: %s", err->msg);
    FUZZ_CHECK(!fuzz_one_line_check() || !strchr(err->msg, '\n'), "message is not one line: %s", err->msg);
    FUZZ_CHECK(err->code == SD_ERR_INPUT || err->code == SD_ERR_NOMEM, "exit code %d for: %s", err->code, err->msg);
}

static void check_file(const sd_safetensors *st)
{
    uint64_t data = st->size - st->data_start;
    for (int i = 0; i < st->n_tensors; i++) {
        const sd_st_tensor *t = &st->tensors[i];
        FUZZ_CHECK(t->begin <= t->end && t->end <= data, "tensor %d outside the data area", i);
        FUZZ_CHECK(t->end - t->begin == (uint64_t)t->numel * sd_dtype_size(t->dtype), "tensor %d span", i);
        FUZZ_CHECK(sd_st_find(st, t->name) == t, "tensor %d not findable", i);
    }
    /* pairwise on small files: no shared bytes between non-empty tensors */
    if (st->n_tensors <= 256)
        for (int i = 0; i < st->n_tensors; i++)
            for (int j = i + 1; j < st->n_tensors; j++) {
                const sd_st_tensor *a = &st->tensors[i], *b = &st->tensors[j];
                if (a->begin == a->end || b->begin == b->end) continue;
                FUZZ_CHECK(a->end <= b->begin || b->end <= a->begin, "tensors \"%s\" [%llu,%llu) and \"%s\" [%llu,%llu) overlap",
                           a->name, (unsigned long long)a->begin, (unsigned long long)a->end, b->name,
                           (unsigned long long)b->begin, (unsigned long long)b->end);
            }
    for (int i = 0; i < st->n_meta; i++) {
        FUZZ_CHECK(st->meta_keys[i] && st->meta_vals[i], "metadata entry %d is NULL", i);
        FUZZ_CHECK(sd_st_meta(st, st->meta_keys[i]) != NULL, "metadata key %d not findable", i);
    }
    /* convert the small tensors (every dtype path) */
    for (int i = 0; i < st->n_tensors && i < 64; i++) {
        const sd_st_tensor *t = &st->tensors[i];
        if (t->numel > (1 << 16)) continue;
        float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        if (!buf) abort();
        sd_err err = {0};
        FUZZ_CHECK(sd_st_read_f32(st, t, buf, &err) == 0, "read_f32: %s", err.msg);
        free(buf);
    }
}

/* Largest data_offsets end in a header (Z mode), capped. */
static uint64_t max_end(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > size - 8) hlen = size - 8;
    cJSON *root = cJSON_ParseWithLength((const char *)data + 8, (size_t)hlen);
    uint64_t m = 0;
    for (cJSON *e = root ? root->child : NULL; e; e = e->next) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        const cJSON *end = cJSON_IsArray(o) && o->child ? o->child->next : NULL;
        if (cJSON_IsNumber(end) && end->valuedouble > (double)m && end->valuedouble <= (double)(64u << 20))
            m = (uint64_t)end->valuedouble;
    }
    cJSON_Delete(root);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024];
    if (size > 0 && data[0] == 'Z') {
        fuzz_write("model.safetensors", data + 1, size - 1, path, sizeof path);
        uint64_t pad = max_end(data + 1, size - 1);
        if (pad && truncate(path, (off_t)(size - 1 + pad)) != 0) abort();
    } else {
        fuzz_write("model.safetensors", data, size, path, sizeof path);
    }

    sd_safetensors st;
    sd_err err = {0};
    if (sd_st_open(&st, path, &err) != 0) {
        check_error(&err, path);
        return 0;
    }
    check_file(&st);
    sd_st_close(&st);

    sd_model m;
    memset(&err, 0, sizeof err);
    if (sd_model_open(&m, path, &err) != 0) {
        check_error(&err, path);
        return 0;
    }
    (void)sd_model_param_count(&m, SD_PREFIX_UNET);
    for (int i = 0; i < m.n_weights && i < 16; i++) {
        const sd_st_tensor *t = &m.files[m.weights[i].file].tensors[m.weights[i].index];
        if (t->numel > (1 << 16)) continue;
        sd_tensor w;
        sd_err e2 = {0};
        if (sd_model_weight(&m, NULL, m.weights[i].name, &w, &e2) != 0) check_error(&e2, path);
    }
    sd_model_close(&m);
    return 0;
}
