/* cpu_loops.h — the CPU kernels in plain C (the entries of sd_cpu_kernels, ops_internal.h).
 *
 * Included by cpu_generic.c, compiled without instruction-set flags (the portable table, for any
 * x86-64 or aarch64), and by cpu_avx2.c, compiled for AVX2 + FMA, where the same loops are
 * vectorised 8 wide and the elementwise ones are replaced by intrinsics. So one source serves
 * both and the loops stay identical; only the compiler flags differ.
 *
 * Exactness: every fused multiply-add the vector kernels do is written as fmaf() here (one
 * rounding on every machine: an FMA instruction, or glibc's correctly rounded fmaf where the
 * CPU has none), and the softmax sums in the same 8 partial sums as the AVX2 kernel, so these
 * loops give the AVX2 kernels' bits. The double-precision statistics (mean_var, layernorm_row)
 * are vectorised with the machine's width and may differ from the vector tables in the last
 * bit. The Winograd transforms only add, subtract and halve: exact everywhere.
 */
#ifndef SDGEN_CPU_LOOPS_H
#define SDGEN_CPU_LOOPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sdgen/safetensors.h"
#include "torch_expf.h"

/* ---- activations ---- */

static inline float sd_silu1(float v) { return v / (1.0f + sd_expf(-v)); }

static inline void sd_loop_affine_act(float *dst, const float *src, int64_t n, float sc, float sh, int silu)
{
    for (int64_t j = 0; j < n; j++) {
        const float v = fmaf(src[j], sc, sh);
        dst[j] = silu ? sd_silu1(v) : v;
    }
}

/* Exact GELU, (x·0.5)·(1 + erf(x·√½)), with erf as PyTorch's AVX2 Vectorized<float>::erf
 * evaluates it: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), t = 1/(1 + p|x|),
 * erf = sign(x)·(1 − t·poly(t)·exp(−x²)), exp as sd_expf. Closer to torch 1.13's F.gelu than
 * glibc's erff: on 2e5 N(0, 4) samples 22% of values differ from torch by ≤ 1 ulp (mean 1.5e-8)
 * against 99% (mean 6.9e-8) with erff. */
static inline float sd_xor_sign(float y, float x)
{
    union { float f; uint32_t u; } a = {.f = y}, b = {.f = x};
    a.u ^= b.u & 0x80000000u;
    return a.f;
}

static inline float sd_erf1(float x)
{
    const float ax = fabsf(x);
    const float t = 1.0f / fmaf(0.3275911f, ax, 1.0f);
    float r = fmaf(1.061405429f, t, -1.453152027f);
    r = fmaf(r, t, 1.421413741f);
    r = fmaf(r, t, -0.284496736f);
    r = fmaf(r, t, 0.254829592f);
    const float e = -sd_expf(-(x * x));
    return sd_xor_sign(fmaf(e * t, r, 1.0f), x);
}

static inline float sd_gelu1(float v) { return (v * 0.5f) * (1.0f + sd_erf1(v * (float)M_SQRT1_2)); }

static inline void sd_loop_gelu_mul(float *o, const float *h, const float *g, int64_t n)
{
    for (int64_t j = 0; j < n; j++) o[j] = h ? h[j] * sd_gelu1(g[j]) : sd_gelu1(g[j]);
}

/* transformers QuickGELUActivation: x * torch.sigmoid(1.702 * x), PyTorch's sigmoid being
 * 1/(1 + exp(-x)) (vectorised: reciprocal, then the product). */
static inline void sd_loop_quick_gelu(float *p, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) p[i] = p[i] * (1.0f / (1.0f + sd_expf(-(1.702f * p[i]))));
}

/* Softmax of one row of n values, the first `valid` of which take part (the rest get 0):
 * max, exp(x − max) and its sum, then x · (1/sum), as PyTorch's vectorised last-dim softmax.
 * The sum runs in 8 partial sums added up in lane order, then the tail: the order of the AVX2
 * kernel, so both give the same bits. */
static inline void sd_loop_softmax_row(float *p, int64_t n, int64_t valid)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < valid; j++) mx = p[j] > mx ? p[j] : mx;
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= valid; j += 8)
        for (int k = 0; k < 8; k++) {
            p[j + k] = sd_expf(p[j + k] - mx);
            part[k] += p[j + k];
        }
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += part[k];
    for (; j < valid; j++) {
        p[j] = sd_expf(p[j] - mx);
        s += p[j];
    }
    const float inv = 1.0f / s;
#pragma omp simd
    for (j = 0; j < valid; j++) p[j] *= inv;
    for (j = valid; j < n; j++) p[j] = 0.0f;
}

/* ---- normalisation statistics (PyTorch's CPU kernels: biased variance, in double) ---- */

static inline void sd_loop_mean_var(const float *p, int64_t n, double *mean, double *var)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += p[j];
    const double m = s / (double)n;
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < n; j++) {
        const double d = p[j] - m;
        v += d * d;
    }
    *mean = m;
    *var = v / (double)n;
}

static inline void sd_loop_layernorm_row(const float *p, float *q, int64_t d, const float *gd, const float *bd,
                                         float eps)
{
    double mean, var;
    sd_loop_mean_var(p, d, &mean, &var);
    const double rstd = 1.0 / sqrt(var + (double)eps);
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
        float t = (float)((p[j] - mean) * rstd);
        if (gd) t *= gd[j];
        if (bd) t += bd[j];
        q[j] = t;
    }
}

/* ---- F16 ---- */

static inline void sd_loop_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = sd_f16_to_f32_1(src[i]);
}

/* ---- Winograd F(2×2, 3×3) transforms (winograd.c has the algorithm and the matrices) ---- */

/* U[ξ][co][ci] = (G g Gᵀ)[ξ] for w [cout, cin, 3, 3]: G g per column, then (G g) Gᵀ per row,
 * written out as explicit sums so the loop over (co, ci) vectorises (strided loads of g). The 16
 * values of a block of SD_WG_WBLOCK pairs go to a buffer on the stack first and out one position ξ
 * at a time: the 16 output streams lie cout·cin floats apart, a multiple of 4 KiB for every U-Net
 * width, so written together they all fall into the same cache sets (33 ns per pair measured, 7–9 ns
 * through the buffer; docs/PERFORMANCE.md "Winograd weight transform"). */
#define SD_WG_WBLOCK 256
static inline void sd_loop_wg_weights(const float *w, int64_t cout, int64_t cin, float *u)
{
    const int64_t cc = cout * cin;
#pragma omp parallel for if (cc >= 65536) schedule(static)
    for (int64_t k0 = 0; k0 < cc; k0 += SD_WG_WBLOCK) {
        float t[16][SD_WG_WBLOCK];
        const int64_t nk = k0 + SD_WG_WBLOCK < cc ? SD_WG_WBLOCK : cc - k0;
#pragma omp simd
        for (int64_t j = 0; j < nk; j++) {
            const float *g = w + (k0 + j) * 9;
            /* t = G g: rows 0..3, columns 0..2 */
            const float t00 = g[0], t01 = g[1], t02 = g[2];
            const float t10 = 0.5f * (g[0] + g[3] + g[6]), t11 = 0.5f * (g[1] + g[4] + g[7]),
                        t12 = 0.5f * (g[2] + g[5] + g[8]);
            const float t20 = 0.5f * (g[0] - g[3] + g[6]), t21 = 0.5f * (g[1] - g[4] + g[7]),
                        t22 = 0.5f * (g[2] - g[5] + g[8]);
            const float t30 = g[6], t31 = g[7], t32 = g[8];
#define WG_U(R, A, B, C)                             \
    t[(R) * 4 + 0][j] = A;                           \
    t[(R) * 4 + 1][j] = 0.5f * ((A) + (B) + (C));    \
    t[(R) * 4 + 2][j] = 0.5f * ((A) - (B) + (C));    \
    t[(R) * 4 + 3][j] = C;
            WG_U(0, t00, t01, t02)
            WG_U(1, t10, t11, t12)
            WG_U(2, t20, t21, t22)
            WG_U(3, t30, t31, t32)
#undef WG_U
        }
        for (int x = 0; x < 16; x++) memcpy(u + x * cc + k0, t[x], (size_t)nk * sizeof(float));
    }
}

/* Row iy of the plane xc [h, w] with the convolution's zero padding (p[0] = 0, p[1 .. w] = the row, zeros
 * after; a row outside [0, h) is all zeros), split in nph phases of rl values: dst[j·rl + k] = p[nph·k + j].
 * The tile loops then read each phase with unit stride. pad: nph·rl floats of work space. */
static inline void sd_wg_row_phases(const float *xc, int64_t h, int64_t w, int64_t iy, int nph, int64_t rl, float *pad,
                                    float *dst)
{
    if (iy < 0 || iy >= h) {
        memset(dst, 0, (size_t)(nph * rl) * sizeof(float));
        return;
    }
    pad[0] = 0.0f;
    memcpy(pad + 1, xc + iy * w, (size_t)w * sizeof(float));
    for (int64_t k = w + 1; k < nph * rl; k++) pad[k] = 0.0f;
    for (int j = 0; j < nph; j++) {
        float *d = dst + j * rl;
#pragma omp simd
        for (int64_t k = 0; k < rl; k++) d[k] = pad[nph * k + j];
    }
}

/* Input transform of tile rows [ty0, ty1) of one channel plane xc [h, w]:
 * vb[ξ·vs + (ty − ty0)·tw + tx] = (Bᵀ d B)[ξ] of the tile at (ty, tx). ws: 12·(tw + 2) floats. */
static inline void sd_loop_wg_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw,
                                      float *vb, int64_t vs, float *ws)
{
    const int64_t rl = tw + 1;
    float *ev = ws, *pad = ws + 8 * (tw + 2);
    for (int64_t ty = ty0; ty < ty1; ty++) {
        /* rows 2ty-1 .. 2ty+2, columns -1 .. 2tw: even/odd split of the padded row */
        for (int r = 0; r < 4; r++) sd_wg_row_phases(xc, h, w, 2 * ty - 1 + r, 2, rl, pad, ev + (2 * r) * rl);
        float *v = vb + (ty - ty0) * tw;
        const float *e0 = ev, *o0 = ev + rl, *e1 = ev + 2 * rl, *o1 = ev + 3 * rl;
        const float *e2 = ev + 4 * rl, *o2 = ev + 5 * rl, *e3 = ev + 6 * rl, *o3 = ev + 7 * rl;
        /* horizontal (d B): h0 = d0 - d2, h1 = d1 + d2, h2 = d2 - d1, h3 = d1 - d3 with
         * d0 = e[tx], d1 = o[tx], d2 = e[tx+1], d3 = o[tx+1]; then vertical (Bᵀ ·) */
#define WG_H(E, O, TX, H0, H1, H2, H3)                                                          \
    const float H0 = E[TX] - E[TX + 1], H1 = O[TX] + E[TX + 1], H2 = E[TX + 1] - O[TX], H3 = O[TX] - O[TX + 1];
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            WG_H(e0, o0, tx, a0, a1, a2, a3)
            WG_H(e1, o1, tx, b0, b1, b2, b3)
            WG_H(e2, o2, tx, c0, c1, c2, c3)
            WG_H(e3, o3, tx, d0, d1, d2, d3)
            v[0 * vs + tx] = a0 - c0;
            v[1 * vs + tx] = a1 - c1;
            v[2 * vs + tx] = a2 - c2;
            v[3 * vs + tx] = a3 - c3;
            v[4 * vs + tx] = b0 + c0;
            v[5 * vs + tx] = b1 + c1;
            v[6 * vs + tx] = b2 + c2;
            v[7 * vs + tx] = b3 + c3;
            v[8 * vs + tx] = c0 - b0;
            v[9 * vs + tx] = c1 - b1;
            v[10 * vs + tx] = c2 - b2;
            v[11 * vs + tx] = c3 - b3;
            v[12 * vs + tx] = b0 - d0;
            v[13 * vs + tx] = b1 - d1;
            v[14 * vs + tx] = b2 - d2;
            v[15 * vs + tx] = b3 - d3;
        }
#undef WG_H
    }
}

/* Output transform of tile rows [ty0, ty1) of one output channel: Y = Aᵀ m A + bias with
 * m[ξ] = mb[ξ·ms + (ty − ty0)·tw + tx], into the plane yc [h, w]. ws: 12·(tw + 2) floats. */
static inline void sd_loop_wg_out_rows(const float *mb0, int64_t ms, float bv, float *yc, int64_t h, int64_t w,
                                       int64_t ty0, int64_t ty1, int64_t tw, float *ws)
{
    const int64_t rl = tw + 1;
    float *r0 = ws, *r1 = ws + 2 * rl; /* two output rows, 2·tw values each */
    float *pad = ws + 8 * (tw + 2);
    float *q0 = pad, *q1 = pad + rl, *q2 = pad + 2 * rl, *q3 = pad + 3 * rl;
    for (int64_t ty = ty0; ty < ty1; ty++) {
        const float *mb = mb0 + (ty - ty0) * tw;
        /* vertical (Aᵀ m): s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 per column c */
#define WG_M(A, C) mb[((A) * 4 + (C)) * ms + tx]
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            const float s00 = WG_M(0, 0) + WG_M(1, 0) + WG_M(2, 0), s10 = WG_M(1, 0) - WG_M(2, 0) - WG_M(3, 0);
            const float s01 = WG_M(0, 1) + WG_M(1, 1) + WG_M(2, 1), s11 = WG_M(1, 1) - WG_M(2, 1) - WG_M(3, 1);
            const float s02 = WG_M(0, 2) + WG_M(1, 2) + WG_M(2, 2), s12 = WG_M(1, 2) - WG_M(2, 2) - WG_M(3, 2);
            const float s03 = WG_M(0, 3) + WG_M(1, 3) + WG_M(2, 3), s13 = WG_M(1, 3) - WG_M(2, 3) - WG_M(3, 3);
            q0[tx] = (s00 + s01 + s02) + bv;
            q1[tx] = (s01 - s02 - s03) + bv;
            q2[tx] = (s10 + s11 + s12) + bv;
            q3[tx] = (s11 - s12 - s13) + bv;
        }
#undef WG_M
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            r0[2 * tx] = q0[tx];
            r0[2 * tx + 1] = q1[tx];
            r1[2 * tx] = q2[tx];
            r1[2 * tx + 1] = q3[tx];
        }
        const int64_t oy = 2 * ty;
        memcpy(yc + oy * w, r0, (size_t)w * sizeof(float));
        if (oy + 1 < h) memcpy(yc + (oy + 1) * w, r1, (size_t)w * sizeof(float));
    }
}

/* ---- Winograd F(4×4, 3×3) transforms (winograd.c has the algorithm and the matrices) ----
 * Every constant of Bᵀ and Aᵀ is applied as a power of two times a difference or sum (4·(d1 − d2),
 * 8·(m3 − m4), ...): such a product is exact, so a fused multiply-add gives the same bits as a
 * multiply and an add, and the tables built with and without contraction agree. */

/* Bᵀ applied to six values (one row or one column of a 6×6 tile) */
#define SD_WG4_B(D0, D1, D2, D3, D4, D5, R0, R1, R2, R3, R4, R5)                                      \
    const float R0 = (4.0f * ((D0) - (D2)) - (D2)) + (D4), R1 = ((D3) + (D4)) - 4.0f * ((D1) + (D2)), \
                R2 = ((D4) - (D3)) + 4.0f * ((D1) - (D2)), R3 = ((D4) - (D2)) + 2.0f * ((D3) - (D1)), \
                R4 = ((D4) - (D2)) - 2.0f * ((D3) - (D1)), R5 = (4.0f * ((D1) - (D3)) - (D3)) + (D5);

/* Aᵀ applied to six values */
#define SD_WG4_A(M0, M1, M2, M3, M4, M5, S0, S1, S2, S3)                                                     \
    const float S0 = (((M0) + (M1)) + ((M2) + (M3))) + (M4), S1 = ((M1) - (M2)) + 2.0f * ((M3) - (M4)),   \
                S2 = ((M1) + (M2)) + 4.0f * ((M3) + (M4)), S3 = (((M1) - (M2)) + 8.0f * ((M3) - (M4))) + (M5);

/* Input transform of tile rows [ty0, ty1) of one channel plane xc [h, w] (tiles of 4×4 outputs,
 * 6×6 inputs from row 4ty − 1 and column 4tx − 1): vb[ξ·vs + (ty − ty0)·tw + tx] = (Bᵀ d B)[ξ],
 * ξ = 6·(row of Bᵀ d) + (column). The padded input row is split in four phases
 * P_j[k] = p[4k + j] so that the loop over tiles reads each with unit stride.
 * ws: sd_wg4_ws_floats(tw) floats. */
static inline int64_t sd_wg4_ws_floats(int64_t tw) { return 28 * (tw + 2); }

static inline void sd_loop_wg4_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw,
                                       float *vb, int64_t vs, float *ws)
{
    const int64_t rl = tw + 1;
    float *ph = ws, *pad = ws + 24 * rl; /* 6 rows × 4 phases of rl values; the padded row, 4·rl */
    for (int64_t ty = ty0; ty < ty1; ty++) {
        /* rows 4ty-1 .. 4ty+4, columns -1 .. 4tw+2: the padded row in four phases */
        for (int r = 0; r < 6; r++) sd_wg_row_phases(xc, h, w, 4 * ty - 1 + r, 4, rl, pad, ph + (4 * r) * rl);
        float *v = vb + (ty - ty0) * tw;
#define SD_WG4_ROW(R, H0, H1, H2, H3, H4, H5)                                                             \
    const float *row##R = ph + (4 * (R)) * rl;                                                              \
    SD_WG4_B(row##R[tx], row##R[rl + tx], row##R[2 * rl + tx], row##R[3 * rl + tx], row##R[tx + 1], row##R[rl + tx + 1], \
             H0, H1, H2, H3, H4, H5)
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            SD_WG4_ROW(0, a0, a1, a2, a3, a4, a5)
            SD_WG4_ROW(1, b0, b1, b2, b3, b4, b5)
            SD_WG4_ROW(2, c0, c1, c2, c3, c4, c5)
            SD_WG4_ROW(3, d0, d1, d2, d3, d4, d5)
            SD_WG4_ROW(4, e0, e1, e2, e3, e4, e5)
            SD_WG4_ROW(5, f0, f1, f2, f3, f4, f5)
            /* vertical: Bᵀ on each column j of the six horizontal results */
#define SD_WG4_COL(J, X0, X1, X2, X3, X4, X5)                                                          \
    {                                                                                                  \
        SD_WG4_B(X0, X1, X2, X3, X4, X5, q0, q1, q2, q3, q4, q5)                                       \
        v[(0 + (J)) * vs + tx] = q0;                                                                   \
        v[(6 + (J)) * vs + tx] = q1;                                                                   \
        v[(12 + (J)) * vs + tx] = q2;                                                                  \
        v[(18 + (J)) * vs + tx] = q3;                                                                  \
        v[(24 + (J)) * vs + tx] = q4;                                                                  \
        v[(30 + (J)) * vs + tx] = q5;                                                                  \
    }
            SD_WG4_COL(0, a0, b0, c0, d0, e0, f0)
            SD_WG4_COL(1, a1, b1, c1, d1, e1, f1)
            SD_WG4_COL(2, a2, b2, c2, d2, e2, f2)
            SD_WG4_COL(3, a3, b3, c3, d3, e3, f3)
            SD_WG4_COL(4, a4, b4, c4, d4, e4, f4)
            SD_WG4_COL(5, a5, b5, c5, d5, e5, f5)
#undef SD_WG4_COL
        }
#undef SD_WG4_ROW
    }
}

/* Output transform of tile rows [ty0, ty1) of one output channel: Y = Aᵀ m A + bias with
 * m[ξ] = mb[ξ·ms + (ty − ty0)·tw + tx], into the plane yc [h, w]. ws: sd_wg4_ws_floats(tw) floats. */
static inline void sd_loop_wg4_out_rows(const float *mb0, int64_t ms, float bv, float *yc, int64_t h, int64_t w,
                                        int64_t ty0, int64_t ty1, int64_t tw, float *ws)
{
    float *q = ws;              /* 16 planes of tw values: output (i, j) of each tile */
    float *r = ws + 16 * tw;    /* one output row, 4·tw values */
    for (int64_t ty = ty0; ty < ty1; ty++) {
        const float *mb = mb0 + (ty - ty0) * tw;
#define SD_WG4_M(A, C) mb[((A) * 6 + (C)) * ms + tx]
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            /* vertical (Aᵀ m) per column c, then horizontal per output row */
#define SD_WG4_VCOL(C, S0, S1, S2, S3) \
    SD_WG4_A(SD_WG4_M(0, C), SD_WG4_M(1, C), SD_WG4_M(2, C), SD_WG4_M(3, C), SD_WG4_M(4, C), SD_WG4_M(5, C), S0, S1, S2, S3)
            SD_WG4_VCOL(0, s00, s10, s20, s30)
            SD_WG4_VCOL(1, s01, s11, s21, s31)
            SD_WG4_VCOL(2, s02, s12, s22, s32)
            SD_WG4_VCOL(3, s03, s13, s23, s33)
            SD_WG4_VCOL(4, s04, s14, s24, s34)
            SD_WG4_VCOL(5, s05, s15, s25, s35)
#undef SD_WG4_VCOL
#define SD_WG4_HROW(I, X0, X1, X2, X3, X4, X5)           \
    {                                                    \
        SD_WG4_A(X0, X1, X2, X3, X4, X5, y0, y1, y2, y3) \
        q[(4 * (I) + 0) * tw + tx] = y0 + bv;            \
        q[(4 * (I) + 1) * tw + tx] = y1 + bv;            \
        q[(4 * (I) + 2) * tw + tx] = y2 + bv;            \
        q[(4 * (I) + 3) * tw + tx] = y3 + bv;            \
    }
            SD_WG4_HROW(0, s00, s01, s02, s03, s04, s05)
            SD_WG4_HROW(1, s10, s11, s12, s13, s14, s15)
            SD_WG4_HROW(2, s20, s21, s22, s23, s24, s25)
            SD_WG4_HROW(3, s30, s31, s32, s33, s34, s35)
#undef SD_WG4_HROW
        }
#undef SD_WG4_M
        for (int i = 0; i < 4; i++) {
            const int64_t oy = 4 * ty + i;
            if (oy >= h) break;
            const float *q0 = q + (4 * i) * tw, *q1 = q0 + tw, *q2 = q1 + tw, *q3 = q2 + tw;
#pragma omp simd
            for (int64_t tx = 0; tx < tw; tx++) {
                r[4 * tx] = q0[tx];
                r[4 * tx + 1] = q1[tx];
                r[4 * tx + 2] = q2[tx];
                r[4 * tx + 3] = q3[tx];
            }
            memcpy(yc + oy * w, r, (size_t)w * sizeof(float));
        }
    }
}

#endif
