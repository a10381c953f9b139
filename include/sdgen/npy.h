/* sdgen/npy.h — read and write NumPy .npy files (version 1.0/2.0, little-endian, C order).
 *
 * Used by --dump-dir (writing the golden-case tensors) and by the tests (reading them).
 *     sd_npy a; if (sd_npy_read(&a, "unet0_out.npy", &err)) ...;  a.f32[i] ...; sd_npy_free(&a);
 * Reading converts float32/float64/int32/int64/uint8 arrays to both f32 and i64 copies.
 */
#ifndef SDGEN_NPY_H
#define SDGEN_NPY_H

#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_npy {
    int ndim;
    int64_t shape[8];
    int64_t numel;
    char dtype[8];   /* "<f4", "<i4", "|u1", ... as in the file */
    float *f32;      /* values as float */
    int64_t *i64;    /* values as integers (truncated for floats) */
} sd_npy;

int sd_npy_read(sd_npy *a, const char *path, sd_err *err);
void sd_npy_free(sd_npy *a);

/* Write float32 / int32 arrays. The file is written to a temporary name and renamed. */
int sd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, sd_err *err);
int sd_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
