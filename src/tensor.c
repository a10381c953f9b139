/* tensor.c — creating and viewing sd_tensor values. */
#include "sdgen/tensor.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

sd_tensor sd_tensor_new(sd_arena *a, int ndim, const int64_t *shape)
{
    assert(ndim >= 1 && ndim <= SD_MAX_DIMS);
    sd_tensor t = {0};
    t.ndim = ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) t.ne[i] = i < ndim ? shape[i] : 1;
    t.data = sd_arena_alloc(a, (size_t)sd_numel(t) * sizeof(float));
    return t;
}

sd_tensor sd_tensor_2d(sd_arena *a, int64_t d0, int64_t d1)
{
    int64_t s[2] = {d0, d1};
    return sd_tensor_new(a, 2, s);
}

sd_tensor sd_tensor_3d(sd_arena *a, int64_t d0, int64_t d1, int64_t d2)
{
    int64_t s[3] = {d0, d1, d2};
    return sd_tensor_new(a, 3, s);
}

sd_tensor sd_tensor_4d(sd_arena *a, int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t s[4] = {n, c, h, w};
    return sd_tensor_new(a, 4, s);
}

sd_tensor sd_tensor_zeros(sd_arena *a, int ndim, const int64_t *shape)
{
    sd_tensor t = sd_tensor_new(a, ndim, shape);
    memset(t.data, 0, (size_t)sd_numel(t) * sizeof(float));
    return t;
}

sd_tensor sd_tensor_copy(sd_arena *a, sd_tensor src)
{
    sd_tensor t = sd_tensor_new(a, src.ndim, src.ne);
    memcpy(t.data, src.data, (size_t)sd_numel(src) * sizeof(float));
    return t;
}

sd_tensor sd_tensor_reshape(sd_tensor t, int ndim, const int64_t *shape)
{
    assert(ndim >= 1 && ndim <= SD_MAX_DIMS);
    sd_tensor r = {0};
    r.data = t.data;
    r.f16 = t.f16;
    r.mem = t.mem;
    r.ndim = ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) r.ne[i] = i < ndim ? shape[i] : 1;
    assert(sd_numel(r) == sd_numel(t));
    return r;
}

sd_tensor sd_tensor_slice0(sd_tensor t, int64_t i, int64_t count)
{
    assert(i >= 0 && count >= 0 && i + count <= t.ne[0]);
    sd_tensor r = t;
    int64_t inner = sd_numel(t) / (t.ne[0] ? t.ne[0] : 1);
    if (t.f16)
        r.f16 = t.f16 + i * inner;
    else
        r.data = t.data + i * inner;
    r.ne[0] = count;
    return r;
}

const char *sd_shape_str(sd_tensor t, char *buf, int bufsize)
{
    int n = snprintf(buf, (size_t)bufsize, "[");
    for (int i = 0; i < t.ndim && n < bufsize; i++)
        n += snprintf(buf + n, (size_t)(bufsize - n), "%s%lld", i ? "," : "", (long long)t.ne[i]);
    if (n < bufsize) snprintf(buf + n, (size_t)(bufsize - n), "]");
    return buf;
}

int sd_tensor_expect(const sd_tensor *t, const char *name, int ndim, const int64_t *shape, sd_err *err)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || t->ne[i] == shape[i];
    if (ok) return 0;
    char got[96], want[96];
    int n = snprintf(want, sizeof want, "[");
    for (int i = 0; i < ndim && n < (int)sizeof want; i++) {
        if (shape[i] < 0) n += snprintf(want + n, sizeof want - (size_t)n, "%s?", i ? "," : "");
        else n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", i ? "," : "", (long long)shape[i]);
    }
    if (n < (int)sizeof want) snprintf(want + n, sizeof want - (size_t)n, "]");
    return sd_errf(err, "tensor \"%s\" has shape %s, expected %s", name, sd_shape_str(*t, got, sizeof got), want);
}
