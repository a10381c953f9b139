/* ops_internal.h — kernels private to the ops (not part of the public API). */
#ifndef SDGEN_OPS_INTERNAL_H
#define SDGEN_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* attn_avx512.c: attention products for head sizes d ≤ 160 on AVX-512 CPUs.
 * sd_attn_avx512_ok(d): the CPU has AVX-512F and d is supported.
 * scores: s[r][j] = scale · Σ_k q[r·ldq + k] · K[j][k], r < rows, j < lkp (lkp % 16 == 0), with K^T
 *         in tiles of 64 keys: keys j0 .. j0+w-1 (w = min(64, lkp − j0)) at kt + j0·d as [d][w].
 * pv:     o[r·ldo + c] = Σ_{j<kn} p[r·ldp + j] · vp[j·dp + c], c < d, dp = 16·ceil(d/16). */
int sd_attn_avx512_ok(int64_t d);
void sd_attn_scores_avx512(const float *q, int64_t ldq, int64_t rows, const float *kt, int64_t lkp, int64_t d,
                           float scale, float *s, int64_t lds);
/* softmax of p[0..valid), zeros in p[valid..n) (sd_attention's rows) */
void sd_softmax_row_avx512(float *p, int64_t n, int64_t valid);
void sd_attn_pv_avx512(const float *p, int64_t ldp, int64_t rows, int64_t kn, const float *vp, int64_t d,
                       float *o, int64_t ldo);

/* winograd.c: 3×3, stride 1, padding 1 convolution of x [n, cin, h, w] into y [n, cout, h, w]
 * by F(2×2, 3×3) on nt threads (called outside a parallel region). u: sd_winograd_u_floats()
 * floats for the transformed weights; scratch: sd_winograd_scratch_floats() floats. */
size_t sd_winograd_u_floats(int64_t cout, int64_t cin);
size_t sd_winograd_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt);
void sd_conv3x3_winograd(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                         const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt);

#endif
