/* sdgen/tensor.h — the f32 tensor view used for weights and activations.
 *
 * An sd_tensor does not own its data: weights point into memory owned by the sd_model (the
 * mmapped file, or a copy converted once) or into the arena scope they were converted for
 * (model.h, sd_model_weight); activations point into an sd_arena.
 * Shapes are listed outermost first, as numpy/PyTorch print them; data is contiguous
 * row-major (activations in NCHW, or [batch, tokens, channels] for sequences).
 */
#ifndef SDGEN_TENSOR_H
#define SDGEN_TENSOR_H

#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_MAX_DIMS 4

/* Where a tensor's data lives, so that a backend knows what it may do with it (docs/ARCHITECTURE.md,
 * "Backends"). The CPU backend computes on both kinds in place but never writes a mapped tensor (the
 * mapping is read-only: a write would fault); a device backend would upload mapped weights once and
 * keep host activations where they are made. Views (reshape, slice) keep their source's kind. */
typedef enum sd_memory {
    SD_MEM_HOST = 0, /* host memory sdgen allocated: an arena, or a weight converted by the model */
    SD_MEM_MAPPED,   /* a read-only view into a memory-mapped model file */
} sd_memory;

typedef struct sd_tensor {
    float *data;
    int ndim;
    int64_t ne[SD_MAX_DIMS]; /* ne[0] outermost; unused dims are 1 */
    sd_memory mem;           /* SD_MEM_HOST unless the model says otherwise (sd_model_weight) */
    /* A weight still in IEEE half precision (sd_model_weight_f16): data is NULL and these are its values,
     * row-major like data. Only the products whose weight operand it is read it (sd_linear and the
     * convolutions, sdgen/ops.h); every other tensor has NULL here. */
    const uint16_t *f16;
} sd_tensor;

/* 1 when an op may write t's data in place (the CPU backend's in-place ops assert it). */
static inline int sd_tensor_writable(sd_tensor t) { return t.mem == SD_MEM_HOST; }

static inline int64_t sd_numel(sd_tensor t)
{
    int64_t n = 1;
    for (int i = 0; i < t.ndim; i++) n *= t.ne[i];
    return n;
}

/* New uninitialised tensors from an arena. Out of memory inside a guarded model call jumps to its
 * guard; outside one .data is NULL, which the caller checks (zeros/copy: use only under a guard). */
sd_tensor sd_tensor_new(sd_arena *a, int ndim, const int64_t *shape);
sd_tensor sd_tensor_2d(sd_arena *a, int64_t d0, int64_t d1);
sd_tensor sd_tensor_3d(sd_arena *a, int64_t d0, int64_t d1, int64_t d2);
sd_tensor sd_tensor_4d(sd_arena *a, int64_t n, int64_t c, int64_t h, int64_t w);
/* Zero-filled / copied. */
sd_tensor sd_tensor_zeros(sd_arena *a, int ndim, const int64_t *shape);
sd_tensor sd_tensor_copy(sd_arena *a, sd_tensor src);
/* View with another shape over the same data (numel must match; asserts). */
sd_tensor sd_tensor_reshape(sd_tensor t, int ndim, const int64_t *shape);
/* View of batch item(s) [i, i+count) along dim 0. */
sd_tensor sd_tensor_slice0(sd_tensor t, int64_t i, int64_t count);
/* Close scope s keeping only t (moved down to the scope's start; see sd_scope in common.h). */
static inline sd_tensor sd_scope_keep(sd_arena *a, sd_scope s, sd_tensor t)
{
    t.data = (float *)sd_scope_keep_bytes(a, s, t.data, (size_t)sd_numel(t) * sizeof(float));
    return t;
}
/* 0 when t has ndim dims equal to shape[] (shape[i] < 0: any), else -1 with
 * "tensor \"name\" has shape [..], expected [..]" in err. */
int sd_tensor_expect(const sd_tensor *t, const char *name, int ndim, const int64_t *shape, sd_err *err);
/* "[2,4,8,8]" into buf. */
const char *sd_shape_str(sd_tensor t, char *buf, int bufsize);

#ifdef __cplusplus
}
#endif
#endif
