/* cpu_avx2.c — the AVX2 + FMA + F16C kernel table (x86-64 only; cpu.c selects it when the CPU
 * has all three). CMakeLists.txt compiles this file alone with -mavx2 -mfma -mf16c: the loops
 * of cpu_loops.h are vectorised 8 wide here, and the elementwise kernels built on sd_expf are
 * written with intrinsics, each the same operations in the same order as the plain-C version
 * (so the same bits: tests/test_ops.c compares the tables). */
#if !defined(__x86_64__) || !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "cpu_avx2.c is built for x86-64 with -mavx2 -mfma -mf16c (see CMakeLists.txt)"
#endif

#include <immintrin.h>

#include "cpu_loops.h"
#include "ops_internal.h"

/* sd_expf on 8 lanes: the same operations in the same order, so the same bits. */
static inline __m256 exp8(__m256 d)
{
    const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(
        d, _mm256_set1_ps(1.442695040888963407359924681001892137426645954152985934135449406931f)));
    const __m256 qf = _mm256_cvtepi32_ps(q);
    __m256 s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-0.693145751953125f), d);
    s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-1.428606765330187045e-06f), s);
    __m256 u = _mm256_set1_ps(0.000198527617612853646278381f);
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00139304355252534151077271f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00833336077630519866943359f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.0416664853692054748535156f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.166666671633720397949219f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.5f));
    u = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(s, s), u, s));
    const __m256i q1 = _mm256_srai_epi32(q, 1), q2 = _mm256_sub_epi32(q, q1);
    const __m256i bias = _mm256_set1_epi32(127);
    u = _mm256_mul_ps(u, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(q1, bias), 23)));
    u = _mm256_mul_ps(u, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(q2, bias), 23)));
    u = _mm256_blendv_ps(u, _mm256_setzero_ps(), _mm256_cmp_ps(d, _mm256_set1_ps(-104.0f), _CMP_LT_OQ));
    u = _mm256_blendv_ps(u, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(d, _mm256_set1_ps(100.0f), _CMP_GT_OQ));
    return u;
}

static inline __m256 silu8(__m256 v)
{
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static void avx2_affine_act(float *dst, const float *src, int64_t n, float sc, float sh, int silu)
{
    int64_t j = 0;
    const __m256 vs = _mm256_set1_ps(sc), vh = _mm256_set1_ps(sh);
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(src + j), vs, vh);
        _mm256_storeu_ps(dst + j, silu ? silu8(v) : v);
    }
    sd_loop_affine_act(dst + j, src + j, n - j, sc, sh, silu);
}

/* sd_gelu1 (cpu_loops.h) on 8 lanes. */
static inline __m256 gelu8(__m256 v)
{
    const __m256 nz = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 x = _mm256_mul_ps(v, _mm256_set1_ps((float)M_SQRT1_2));
    const __m256 sign = _mm256_and_ps(nz, x), ax = _mm256_xor_ps(sign, x);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
    __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
    const __m256 e = _mm256_xor_ps(nz, exp8(_mm256_xor_ps(nz, _mm256_mul_ps(x, x))));
    const __m256 erf = _mm256_xor_ps(sign, _mm256_fmadd_ps(_mm256_mul_ps(e, t), r, one));
    return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.5f)), _mm256_add_ps(one, erf));
}

static void avx2_gelu_mul(float *o, const float *h, const float *g, int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 y = gelu8(_mm256_loadu_ps(g + j));
        _mm256_storeu_ps(o + j, h ? _mm256_mul_ps(_mm256_loadu_ps(h + j), y) : y);
    }
    sd_loop_gelu_mul(o + j, h ? h + j : NULL, g + j, n - j);
}

static void avx2_quick_gelu(float *p, int64_t n) { sd_loop_quick_gelu(p, n); }

/* sd_loop_softmax_row with the max and the 8 partial sums in registers. */
static void avx2_softmax_row(float *p, int64_t n, int64_t valid)
{
    int64_t j = 0;
    float mx = -INFINITY, s = 0.0f;
    if (valid >= 8) {
        __m256 vm = _mm256_loadu_ps(p);
        for (j = 8; j + 8 <= valid; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + j));
        float t[8];
        _mm256_storeu_ps(t, vm);
        for (int k = 0; k < 8; k++) mx = t[k] > mx ? t[k] : mx;
    }
    for (; j < valid; j++) mx = p[j] > mx ? p[j] : mx;
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vs = _mm256_setzero_ps();
    for (j = 0; j + 8 <= valid; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmx));
        _mm256_storeu_ps(p + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    {
        float t[8];
        _mm256_storeu_ps(t, vs);
        for (int k = 0; k < 8; k++) s += t[k];
    }
    for (; j < valid; j++) {
        p[j] = sd_expf(p[j] - mx);
        s += p[j];
    }
    const float inv = 1.0f / s;
#pragma omp simd
    for (j = 0; j < valid; j++) p[j] *= inv;
    for (j = valid; j < n; j++) p[j] = 0.0f;
}

static void avx2_mean_var(const float *p, int64_t n, double *mean, double *var) { sd_loop_mean_var(p, n, mean, var); }

static void avx2_layernorm_row(const float *p, float *q, int64_t d, const float *g, const float *b, float eps)
{
    sd_loop_layernorm_row(p, q, d, g, b, eps);
}

/* F16C's vcvtph2ps is exact for every pattern and quietens NaNs as sd_f16_to_f32_1 does. */
static void avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    sd_loop_f16_to_f32(src + i, dst + i, n - i);
}

static void avx2_wg_weights(const float *w, int64_t cout, int64_t cin, float *u) { sd_loop_wg_weights(w, cout, cin, u); }

static void avx2_wg_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                            int64_t vs, float *ws)
{
    sd_loop_wg_in_rows(xc, h, w, ty0, ty1, tw, vb, vs, ws);
}

static void avx2_wg_out_rows(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                             int64_t ty1, int64_t tw, float *ws)
{
    sd_loop_wg_out_rows(mb, ms, bias, yc, h, w, ty0, ty1, tw, ws);
}

static void avx2_wg4_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                            int64_t vs, float *ws)
{
    sd_loop_wg4_in_rows(xc, h, w, ty0, ty1, tw, vb, vs, ws);
}

static void avx2_wg4_out_rows(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                             int64_t ty1, int64_t tw, float *ws)
{
    sd_loop_wg4_out_rows(mb, ms, bias, yc, h, w, ty0, ty1, tw, ws);
}

void sd_cpu_fill_avx2(sd_cpu_kernels *k)
{
    k->name = "avx2";
    k->affine_act = avx2_affine_act;
    k->gelu_mul = avx2_gelu_mul;
    k->quick_gelu = avx2_quick_gelu;
    k->softmax_row = avx2_softmax_row;
    k->mean_var = avx2_mean_var;
    k->layernorm_row = avx2_layernorm_row;
    k->f16_to_f32 = avx2_f16_to_f32;
    k->wg_weights = avx2_wg_weights;
    k->wg_in_rows = avx2_wg_in_rows;
    k->wg_out_rows = avx2_wg_out_rows;
    k->wg4_in_rows = avx2_wg4_in_rows;
    k->wg4_out_rows = avx2_wg4_out_rows;
}
