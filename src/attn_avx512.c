/* attn_avx512.c — register-blocked AVX-512 kernels for the two products of attention with a
 * small head size (d ≤ 160: SD 1.x 40/80/160, SD 2.x and CLIP 64), used by sd_attention.
 *
 * Why not sgemm: with d = 40 the products are S [rows, lk] = Q [rows, 40] · K^T and
 * O [rows, 40] = P [rows, lk] · V [lk, 40]; OpenBLAS repacks K (or P and V) on every call, which
 * costs as much as the 40 multiply-adds per element it feeds (measured: 53 GFLOP/s per core
 * against 120–130 for a square sgemm). Here K is transposed and V padded once per head, shared
 * by every query block, and each kernel keeps its accumulators in registers.
 *
 * Arithmetic is the same as a GEMM's: each score is the sequential fused sum over k of
 * q[k]·K[j][k], times the scale once at the end (diffusers' baddbmm(alpha = scale)); each output
 * the sequential fused sum over keys j of P[r][j]·V[j] (zeros past the valid keys add exactly 0).
 * Built for AVX-512F through function attributes; only the AVX-512 kernel table (cpu_avx512.c)
 * points at them, and cpu.c picks that table only on CPUs with AVX-512F. */
#if !defined(__x86_64__)
#error "attn_avx512.c is for x86-64 only (CMakeLists.txt leaves it out elsewhere)"
#endif

#include <immintrin.h>

#include "ops_internal.h"

#define T512 __attribute__((target("avx512f,fma")))

/* S[r][j] = scale · Σ_k q_r[k] · K[j][k] for r < rows, j < lkp (a multiple of 16), with K^T
 * in tiles of 64 keys: the tile of keys j0 .. j0+w-1 (w = min(64, lkp - j0)) is kt + j0·d,
 * laid out [d][w]. Tiles are the outer loop, so one tile (10 KB at d = 40) stays in L1 for all
 * query rows; in a plain [d][lkp] layout its rows would lie lkp floats apart, all in the same
 * L1 sets. */
T512 void sd_attn_scores_avx512(const float *q, int64_t ldq, int64_t rows, const float *kt, int64_t lkp,
                                int64_t d, float scale, float *s, int64_t lds)
{
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t j0 = 0; j0 < lkp; j0 += 64) {
        const int64_t wj = lkp - j0 < 64 ? lkp - j0 : 64;
        const float *kb = kt + j0 * d;
        int64_t r = 0;
        if (wj == 64) {
            for (; r + 4 <= rows; r += 4) {
                const float *q0 = q + r * ldq, *q1 = q0 + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
                float *s0 = s + r * lds + j0, *s1 = s0 + lds, *s2 = s1 + lds, *s3 = s2 + lds;
                __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
                __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
                __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
                __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00;
                const float *kp = kb;
                for (int64_t k = 0; k < d; k++, kp += 64) {
                    const __m512 b0 = _mm512_loadu_ps(kp), b1 = _mm512_loadu_ps(kp + 16);
                    const __m512 b2 = _mm512_loadu_ps(kp + 32), b3 = _mm512_loadu_ps(kp + 48);
                    __m512 a = _mm512_set1_ps(q0[k]);
                    c00 = _mm512_fmadd_ps(a, b0, c00);
                    c01 = _mm512_fmadd_ps(a, b1, c01);
                    c02 = _mm512_fmadd_ps(a, b2, c02);
                    c03 = _mm512_fmadd_ps(a, b3, c03);
                    a = _mm512_set1_ps(q1[k]);
                    c10 = _mm512_fmadd_ps(a, b0, c10);
                    c11 = _mm512_fmadd_ps(a, b1, c11);
                    c12 = _mm512_fmadd_ps(a, b2, c12);
                    c13 = _mm512_fmadd_ps(a, b3, c13);
                    a = _mm512_set1_ps(q2[k]);
                    c20 = _mm512_fmadd_ps(a, b0, c20);
                    c21 = _mm512_fmadd_ps(a, b1, c21);
                    c22 = _mm512_fmadd_ps(a, b2, c22);
                    c23 = _mm512_fmadd_ps(a, b3, c23);
                    a = _mm512_set1_ps(q3[k]);
                    c30 = _mm512_fmadd_ps(a, b0, c30);
                    c31 = _mm512_fmadd_ps(a, b1, c31);
                    c32 = _mm512_fmadd_ps(a, b2, c32);
                    c33 = _mm512_fmadd_ps(a, b3, c33);
                }
                _mm512_storeu_ps(s0, _mm512_mul_ps(c00, vs));
                _mm512_storeu_ps(s0 + 16, _mm512_mul_ps(c01, vs));
                _mm512_storeu_ps(s0 + 32, _mm512_mul_ps(c02, vs));
                _mm512_storeu_ps(s0 + 48, _mm512_mul_ps(c03, vs));
                _mm512_storeu_ps(s1, _mm512_mul_ps(c10, vs));
                _mm512_storeu_ps(s1 + 16, _mm512_mul_ps(c11, vs));
                _mm512_storeu_ps(s1 + 32, _mm512_mul_ps(c12, vs));
                _mm512_storeu_ps(s1 + 48, _mm512_mul_ps(c13, vs));
                _mm512_storeu_ps(s2, _mm512_mul_ps(c20, vs));
                _mm512_storeu_ps(s2 + 16, _mm512_mul_ps(c21, vs));
                _mm512_storeu_ps(s2 + 32, _mm512_mul_ps(c22, vs));
                _mm512_storeu_ps(s2 + 48, _mm512_mul_ps(c23, vs));
                _mm512_storeu_ps(s3, _mm512_mul_ps(c30, vs));
                _mm512_storeu_ps(s3 + 16, _mm512_mul_ps(c31, vs));
                _mm512_storeu_ps(s3 + 32, _mm512_mul_ps(c32, vs));
                _mm512_storeu_ps(s3 + 48, _mm512_mul_ps(c33, vs));
            }
        }
        /* narrow tile or leftover rows: 16 keys × 1 row at a time */
        for (; r < rows; r++) {
            const float *q0 = q + r * ldq;
            for (int64_t jj = 0; jj < wj; jj += 16) {
                __m512 c0 = _mm512_setzero_ps();
                const float *kp = kb + jj;
                for (int64_t k = 0; k < d; k++, kp += wj)
                    c0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[k]), _mm512_loadu_ps(kp), c0);
                _mm512_storeu_ps(s + r * lds + j0 + jj, _mm512_mul_ps(c0, vs));
            }
        }
    }
}

/* sd_expf (torch_expf.h) on 16 lanes: the same operations in the same order (SLEEF's xexpf with
 * FMA: Cody-Waite reduction by ln 2, degree-6 polynomial), so the same bits as the scalar and
 * 8-lane versions. The scalar code scales by 2^q in two halves (2^(q>>1) · 2^(q-(q>>1)), so
 * that subnormal results round once); vscalefps does the same single rounding in one
 * instruction, and q stays a float (roundscale to nearest = cvtps_epi32's rounding). Checked
 * over all 2^32 inputs: identical bits to the two-halves version (NaNs aside). */
static inline __attribute__((always_inline)) T512 __m512 exp16(__m512 d)
{
    const __m512 qf = _mm512_roundscale_ps(
        _mm512_mul_ps(d, _mm512_set1_ps(1.442695040888963407359924681001892137426645954152985934135449406931f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 s = _mm512_fmadd_ps(qf, _mm512_set1_ps(-0.693145751953125f), d);
    s = _mm512_fmadd_ps(qf, _mm512_set1_ps(-1.428606765330187045e-06f), s);
    __m512 u = _mm512_set1_ps(0.000198527617612853646278381f);
    u = _mm512_fmadd_ps(u, s, _mm512_set1_ps(0.00139304355252534151077271f));
    u = _mm512_fmadd_ps(u, s, _mm512_set1_ps(0.00833336077630519866943359f));
    u = _mm512_fmadd_ps(u, s, _mm512_set1_ps(0.0416664853692054748535156f));
    u = _mm512_fmadd_ps(u, s, _mm512_set1_ps(0.166666671633720397949219f));
    u = _mm512_fmadd_ps(u, s, _mm512_set1_ps(0.5f));
    u = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(s, s), u, s));
    u = _mm512_scalef_ps(u, qf);
    u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, _mm512_set1_ps(-104.0f), _CMP_LT_OQ), u, _mm512_setzero_ps());
    u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, _mm512_set1_ps(100.0f), _CMP_GT_OQ), u,
                             _mm512_set1_ps(__builtin_inff()));
    return u;
}

/* Softmax of p[0..valid) in place, p[valid..n) = 0: max, e = exp(x − max) and its sum, then
 * e · (1/sum), as PyTorch's vectorised last-dim softmax. */
T512 void sd_softmax_row_avx512(float *p, int64_t n, int64_t valid)
{
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 vm = ninf;
    int64_t j = 0;
    for (; j + 16 <= valid; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(p + j));
    const __mmask16 tm = (__mmask16)((1u << (valid - j)) - 1);
    if (tm) vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(ninf, tm, p + j));
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512 vs = _mm512_setzero_ps();
    for (j = 0; j + 16 <= valid; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + j), vmx));
        _mm512_storeu_ps(p + j, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (tm) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(vmx, tm, p + j), vmx));
        _mm512_mask_storeu_ps(p + j, tm, e);
        vs = _mm512_mask_add_ps(vs, tm, vs, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
    for (j = 0; j + 16 <= valid; j += 16) _mm512_storeu_ps(p + j, _mm512_mul_ps(_mm512_loadu_ps(p + j), inv));
    if (tm) _mm512_mask_storeu_ps(p + j, tm, _mm512_mul_ps(_mm512_loadu_ps(p + j), inv));
    for (j = valid; j < n; j++) p[j] = 0.0f;
}

/* O[r][0..d) (+)= Σ_{j0 ≤ j < j0+jn} P[r][j] · vp[j][0..dp) with DZ = dp/16 vectors per row, R
 * rows at a time: the accumulators (R·DZ ≤ 24 registers) stay in registers over the key block,
 * start from 0 (first block) or from O (later blocks: the same sequence of fused multiply-adds
 * as one pass over all keys, so the same result). */
static inline __attribute__((always_inline)) T512 void pv_tile(const float *p, int64_t ldp, int64_t jn,
                                                                 const float *vp, int64_t dp, int64_t d, float *o,
                                                                 int64_t ldo, int first, const int R, const int DZ)
{
    __m512 acc[4][10];
    const int tail = (int)(d - 16 * (DZ - 1));
    const __mmask16 m = (__mmask16)(tail >= 16 ? 0xffff : (1u << tail) - 1);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 10
        for (int z = 0; z < DZ; z++) {
            const __mmask16 mz = z + 1 < DZ ? (__mmask16)0xffff : m;
            acc[i][z] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mz, o + i * ldo + 16 * z);
        }
    for (int64_t j = 0; j < jn; j++) {
        const float *vr = vp + j * dp;
        __m512 b[10];
#pragma GCC unroll 10
        for (int z = 0; z < DZ; z++) b[z] = _mm512_loadu_ps(vr + 16 * z);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(p[i * ldp + j]);
#pragma GCC unroll 10
            for (int z = 0; z < DZ; z++) acc[i][z] = _mm512_fmadd_ps(a, b[z], acc[i][z]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
#pragma GCC unroll 10
        for (int z = 0; z + 1 < DZ; z++) _mm512_storeu_ps(o + i * ldo + 16 * z, acc[i][z]);
        _mm512_mask_storeu_ps(o + i * ldo + 16 * (DZ - 1), m, acc[i][DZ - 1]);
    }
}

/* Keys per block of the PV product: the block of V (jb·dp floats, 24 KB at d = 40) stays in L1
 * while every row group of the query block runs over it. */
#define PV_KEYS 128

#define PV_ROWS(RR, DZZ)                                                                             \
    for (int64_t j0 = 0; j0 < kn; j0 += PV_KEYS) {                                                   \
        const int64_t jn = kn - j0 < PV_KEYS ? kn - j0 : PV_KEYS;                                    \
        int64_t r = 0;                                                                               \
        for (; r + (RR) <= rows; r += (RR))                                                          \
            pv_tile(p + r * ldp + j0, ldp, jn, vp + j0 * dp, dp, d, o + r * ldo, ldo, j0 == 0, RR, DZZ); \
        for (; r < rows; r++)                                                                        \
            pv_tile(p + r * ldp + j0, ldp, jn, vp + j0 * dp, dp, d, o + r * ldo, ldo, j0 == 0, 1, DZZ);  \
    }

/* O[r][0..d) = Σ_{j<kn} P[r][j] · vp[j] for r < rows; vp rows hold dp = 16·ceil(d/16) floats,
 * zero past d. */
T512 void sd_attn_pv_avx512(const float *p, int64_t ldp, int64_t rows, int64_t kn, const float *vp, int64_t d,
                            float *o, int64_t ldo)
{
    const int64_t dz = (d + 15) / 16, dp = 16 * dz;
    switch (dz) {
    case 1: PV_ROWS(4, 1) break;
    case 2: PV_ROWS(4, 2) break;
    case 3: PV_ROWS(4, 3) break;
    case 4: PV_ROWS(4, 4) break;
    case 5: PV_ROWS(4, 5) break;
    case 6: PV_ROWS(3, 6) break;
    case 7: PV_ROWS(2, 7) break;
    case 8: PV_ROWS(2, 8) break;
    case 9: PV_ROWS(2, 9) break;
    default: PV_ROWS(2, 10) break;
    }
}

