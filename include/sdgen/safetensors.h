/* sdgen/safetensors.h — read-only, validated access to a .safetensors file.
 *
 * Usage:
 *     sd_safetensors st; sd_err err;
 *     if (sd_st_open(&st, "model.safetensors", &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *     const sd_st_tensor *t = sd_st_find(&st, "first_stage_model.decoder.conv_in.weight");
 *     float *buf = malloc(t->numel * sizeof(float));
 *     sd_st_read_f32(&st, t, buf, &err);   // converts F16/BF16/F64/ints exactly
 *     sd_st_close(&st);
 *
 * The file is mmapped read-only. sd_st_open validates everything before any tensor byte is
 * touched: the 8-byte header length against the file size and SD_ST_MAX_HEADER, the JSON
 * shape, each dtype, shape × dtype size = byte span, offsets inside the data area, no
 * overlaps, `__metadata__` as a map of strings. The file is untrusted input.
 */
#ifndef SDGEN_SAFETENSORS_H
#define SDGEN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, as the reference Rust reader caps it */
#define SD_ST_MAX_TENSORS 100000
#define SD_ST_MAX_DIMS 8
#define SD_ST_MAX_NAME 1024

typedef enum sd_dtype {
    SD_DT_F32, SD_DT_F16, SD_DT_BF16, SD_DT_F64,
    SD_DT_I64, SD_DT_I32, SD_DT_I16, SD_DT_I8, SD_DT_U8, SD_DT_BOOL,
    SD_DT_COUNT
} sd_dtype;

const char *sd_dtype_name(sd_dtype d);
size_t sd_dtype_size(sd_dtype d);

typedef struct sd_st_tensor {
    char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte offsets relative to the data area */
} sd_st_tensor;

typedef struct sd_safetensors {
    char *path;
    int fd;
    const uint8_t *map;   /* whole file */
    size_t size;          /* file size */
    int64_t mtime_ns;     /* modification time at open (sd_st_check_unchanged) */
    size_t data_start;    /* 8 + header length */
    int n_tensors;
    sd_st_tensor *tensors; /* in header order */
    int n_meta;
    char **meta_keys, **meta_vals;
    sd_name_index index; /* name -> tensor index */
} sd_safetensors;

int sd_st_open(sd_safetensors *st, const char *path, sd_err *err);
void sd_st_close(sd_safetensors *st);
const sd_st_tensor *sd_st_find(const sd_safetensors *st, const char *name);
const char *sd_st_meta(const sd_safetensors *st, const char *key); /* NULL if absent */
/* Whether the file still has the size and modification time it had at open: a file rewritten in
 * place while mapped shows its new bytes through the mapping (and a truncated one raises SIGBUS),
 * so a result computed meanwhile cannot be trusted. 0, or -1 with err (exit code 2). */
int sd_st_check_unchanged(const sd_safetensors *st, sd_err *err);
/* Pointer to the tensor's raw bytes (inside the mapping). */
static inline const void *sd_st_data(const sd_safetensors *st, const sd_st_tensor *t)
{
    return st->map + st->data_start + t->begin;
}
/* Convert any numeric dtype to f32 (F16/BF16 exactly; F64/I64 rounded). */
int sd_st_read_f32(const sd_safetensors *st, const sd_st_tensor *t, float *out, sd_err *err);

/* Exact conversions, vectorised with F16C / AVX-512 where the CPU has them. */
void sd_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void sd_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
float sd_f16_to_f32_1(uint16_t h); /* scalar reference */
uint16_t sd_f32_to_f16_1(float f); /* round to nearest even, for tests and writers */

#ifdef __cplusplus
}
#endif
#endif
