/* lowrank.c — layers with LoRA modules added as low-rank products (see include/sdgen/lowrank.h).
 *
 * Both products go through the ordinary ops (sd_linear, sd_conv2d), so they run threaded like the layer
 * itself; their outputs are scratch in a scope of their own, released before returning, so the caller's
 * arena holds only y, as with the plain op. */
#include "sdgen/lowrank.h"

#include <assert.h>

#include "sdgen/ops.h"

/* y[i, row0 + o] += t[i, o] for i < m, o < rows; y rows have `out` values. */
static void add_cols(float *y, int64_t out, int64_t row0, const float *t, int64_t m, int64_t rows)
{
#pragma omp parallel for if (m * rows >= (1 << 16))
    for (int64_t i = 0; i < m; i++) {
        float *yi = y + i * out + row0;
        const float *ti = t + i * rows;
        for (int64_t o = 0; o < rows; o++) yi[o] += ti[o];
    }
}

sd_tensor sd_linear_lr(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, const sd_lowrank *lr)
{
    sd_tensor y = sd_linear(a, x, w, b);
    if (!lr) return y;
    const int64_t in = x.ne[x.ndim - 1], out = w->ne[0], m = sd_numel(x) / in;
    sd_scope s = sd_scope_open(a);
    for (; lr; lr = lr->next) {
        assert(lr->cols == in && lr->row0 >= 0 && lr->row0 + lr->rows <= out);
        const sd_tensor D = {.data = (float *)lr->down, .ndim = 2, .ne = {lr->r, in, 1, 1}};
        const sd_tensor U = {.data = (float *)lr->up, .ndim = 2, .ne = {lr->rows, lr->r, 1, 1}};
        sd_tensor t = sd_linear(a, x, &D, NULL); /* [.., r] */
        t = sd_linear(a, t, &U, NULL);           /* [.., rows] */
        add_cols(y.data, out, lr->row0, t.data, m, lr->rows);
        sd_scope_close(a, s);
    }
    return y;
}

sd_tensor sd_conv2d_lr(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_lowrank *lr)
{
    sd_tensor y = sd_conv2d(a, x, w, b, stride, pad);
    if (!lr) return y;
    const int64_t n = y.ne[0], cout = y.ne[1], hw = y.ne[2] * y.ne[3];
    sd_scope s = sd_scope_open(a);
    for (; lr; lr = lr->next) {
        assert(lr->kh == w->ne[2] && lr->kw == w->ne[3] && lr->cols == x.ne[1] * lr->kh * lr->kw &&
               lr->row0 >= 0 && lr->row0 + lr->rows <= cout);
        const sd_tensor D = {.data = (float *)lr->down, .ndim = 4, .ne = {lr->r, x.ne[1], lr->kh, lr->kw}};
        const sd_tensor U = {.data = (float *)lr->up, .ndim = 4, .ne = {lr->rows, lr->r, 1, 1}};
        sd_tensor t = sd_conv2d(a, x, &D, NULL, stride, pad); /* [n, r, oh, ow] */
        t = sd_conv2d(a, t, &U, NULL, 1, 0);                  /* [n, rows, oh, ow] */
        for (int64_t i = 0; i < n; i++)
            add_cols(y.data + (i * cout + lr->row0) * hw, hw, 0, t.data + i * lr->rows * hw, lr->rows, hw);
        sd_scope_close(a, s);
    }
    return y;
}
