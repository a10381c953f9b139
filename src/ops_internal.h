/* ops_internal.h — kernels private to the ops (not part of the public API). */
#ifndef SDGEN_OPS_INTERNAL_H
#define SDGEN_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/ops.h"

/* ---- the CPU backend: one table of kernels per instruction set ----
 *
 * The ops (ops.c, winograd.c) and the F16 reader (safetensors.c) do their inner loops through
 * the table sd_cpu() returns, chosen once per process (cpu.c; docs/ARCHITECTURE.md "CPU
 * backend"). Every entry exists in every table: "generic" is plain C (cpu_loops.h compiled
 * without instruction-set flags, cpu_generic.c), "avx2" the same C compiled for AVX2 + FMA +
 * F16C with hand-written AVX2 versions of the elementwise kernels (cpu_avx2.c), "avx512" that
 * table with the AVX-512 attention kernels and F16 conversion (attn_avx512.c, cpu_avx512.c).
 * Where the project promises bit-exact results (sd_expf, the activations built on it, the
 * softmax, F16 → F32, the Winograd transforms) every table computes the same bits; the
 * normalisation statistics may differ in the last bits (tests/test_ops.c checks both). */
typedef struct sd_cpu_kernels {
    const char *name; /* "generic", "avx2", "avx512" */
    /* dst[j] = silu(src[j]·sc + sh) (silu = 0: without the SiLU), j < n; dst may be src */
    void (*affine_act)(float *dst, const float *src, int64_t n, float sc, float sh, int silu);
    /* o[j] = h[j]·gelu(g[j]) (h = NULL: o[j] = gelu(g[j])), j < n; o may be g */
    void (*gelu_mul)(float *o, const float *h, const float *g, int64_t n);
    /* p[j] = p[j]·sigmoid(1.702·p[j]), j < n */
    void (*quick_gelu)(float *p, int64_t n);
    /* softmax of p[0..valid), zeros in p[valid..n) */
    void (*softmax_row)(float *p, int64_t n, int64_t valid);
    /* mean and biased variance of p[0..n), accumulated in double */
    void (*mean_var)(const float *p, int64_t n, double *mean, double *var);
    /* q[0..d) = layernorm of p[0..d) with gain g and bias b (either may be NULL) */
    void (*layernorm_row)(const float *p, float *q, int64_t d, const float *g, const float *b, float eps);
    /* exact binary16 → float32 of n values */
    void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
    /* Winograd F(2×2, 3×3) transforms (cpu_loops.h; winograd.c is the driver):
     * wg_weights: u[ξ][co][ci] = (G g Gᵀ)[ξ] for w [cout, cin, 3, 3] (threads itself);
     * wg_in_rows: vb[ξ·vs + (ty − ty0)·tw + tx] = (Bᵀ d B)[ξ] for tile rows [ty0, ty1) of one
     *   channel plane xc [h, w]; wg_out_rows: Y = Aᵀ m A + bias of tile rows [ty0, ty1) into the
     *   plane yc [h, w], m[ξ] = mb[ξ·ms + (ty − ty0)·tw + tx]. ws: 12·(tw + 2) floats. */
    void (*wg_weights)(const float *w, int64_t cout, int64_t cin, float *u);
    void (*wg_in_rows)(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                       int64_t vs, float *ws);
    void (*wg_out_rows)(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                        int64_t ty1, int64_t tw, float *ws);
    /* The same two transforms for F(4×4, 3×3): 36 tile positions ξ, tiles of 4×4 outputs,
     * ws: sd_wg4_ws_floats(tw) floats (cpu_loops.h). */
    void (*wg4_in_rows)(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                        int64_t vs, float *ws);
    void (*wg4_out_rows)(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                         int64_t ty1, int64_t tw, float *ws);
    /* Attention products for head sizes d ≤ attn_max_d (0: none in this table, sd_attention
     * uses sgemm). scores: s[r][j] = scale · Σ_k q[r·ldq + k] · K[j][k], r < rows, j < lkp
     * (lkp % 16 == 0), with K^T in tiles of 64 keys: keys j0 .. j0+w-1 (w = min(64, lkp − j0))
     * at kt + j0·d as [d][w]. attn_softmax_row: as softmax_row, for these rows. pv:
     * o[r·ldo + c] = Σ_{j<kn} p[r·ldp + j] · vp[j·dp + c], c < d, dp = 16·ceil(d/16). */
    int64_t attn_max_d;
    void (*attn_scores)(const float *q, int64_t ldq, int64_t rows, const float *kt, int64_t lkp, int64_t d,
                        float scale, float *s, int64_t lds);
    void (*attn_softmax_row)(float *p, int64_t n, int64_t valid);
    void (*attn_pv)(const float *p, int64_t ldp, int64_t rows, int64_t kn, const float *vp, int64_t d, float *o,
                    int64_t ldo);
} sd_cpu_kernels;

/* The table in use (cpu.c): chosen on first use from the CPU's features, or by $SDGEN_CPU, or
 * by sd_cpu_select (include/sdgen/ops.h). Never NULL. Read it outside parallel regions. */
const sd_cpu_kernels *sd_cpu(void);

/* The tables, filled by the file of each instruction set (each overrides what it has). */
void sd_cpu_fill_generic(sd_cpu_kernels *k);
#if defined(__x86_64__)
void sd_cpu_fill_avx2(sd_cpu_kernels *k);
void sd_cpu_fill_avx512(sd_cpu_kernels *k);
#endif

/* attn_avx512.c: attention products for head sizes d ≤ 160 (the attn_* entries above). */
#if defined(__x86_64__)
void sd_attn_scores_avx512(const float *q, int64_t ldq, int64_t rows, const float *kt, int64_t lkp, int64_t d,
                           float scale, float *s, int64_t lds);
void sd_softmax_row_avx512(float *p, int64_t n, int64_t valid);
void sd_attn_pv_avx512(const float *p, int64_t ldp, int64_t rows, int64_t kn, const float *vp, int64_t d,
                       float *o, int64_t ldo);
#endif

/* winograd.c: 3×3, stride 1, padding 1 convolution of x [n, cin, h, w] into y [n, cout, h, w]
 * by F(2×2, 3×3) on nt threads (called outside a parallel region). u: sd_winograd_u_floats()
 * floats for the transformed weights; scratch: sd_winograd_scratch_floats() floats. */
size_t sd_winograd_u_floats(int64_t cout, int64_t cin);
size_t sd_winograd_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt);
void sd_conv3x3_winograd(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                         const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt,
                         const sd_conv_epilogue *ep);
/* The same by F(4×4, 3×3) (winograd.c): 36 products instead of 16 for four times the outputs. */
size_t sd_winograd4_u_floats(int64_t cout, int64_t cin);
size_t sd_winograd4_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt);
void sd_conv3x3_winograd4(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                          const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt,
                          const sd_conv_epilogue *ep);
/* Exact F16 -> F32 of n values, on all threads for large n (ops.c). */
void sd_f16_to_f32_par(const uint16_t *src, float *dst, size_t n);

/* The epilogue (ops.h) on n values p of an output; add is the matching part of ep->add or NULL. */
void sd_conv_epilogue_apply(const sd_conv_epilogue *ep, float *p, const float *add, int64_t n);

#endif
