/* rng.c — PyTorch CPU (mt19937 + Box–Muller) and A1111 Philox normal draws (sdgen/rng.h).
 *
 * Bit-exactness needs every float32 operation of the reference rounded the same way, so this
 * file must not let the compiler fuse a*b+c on its own (gnu11 defaults to -ffp-contract=fast):
 * contraction is switched off here and the fusions the reference build has are written out
 * with fmaf().
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "sdgen/rng.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ mt19937 (PyTorch at::mt19937) */

/* Standard MT19937 initialisation (Matsumoto & Nishimura init_genrand); PyTorch seeds it with
 * the low 32 bits of the 64-bit seed (CPUGeneratorImpl::set_current_seed → mt19937(seed)). */
static void mt_seed(sd_rng *r, uint32_t s)
{
    r->mt[0] = s;
    for (int k = 1; k < SD_MT_N; k++)
        r->mt[k] = 1812433253u * (r->mt[k - 1] ^ (r->mt[k - 1] >> 30)) + (uint32_t)k;
    /* at::mt19937 starts with left = 1 so the first output regenerates the state. */
    r->mt_left = 1;
    r->mt_next = 0;
}

static void mt_twist(sd_rng *r)
{
    enum { N = SD_MT_N, M = 397 };
    uint32_t *s = r->mt;
    for (int k = 0; k < N; k++) {
        uint32_t y = (s[k] & 0x80000000u) | (s[(k + 1) % N] & 0x7fffffffu);
        uint32_t v = s[(k + M) % N] ^ (y >> 1);
        if (y & 1u) v ^= 0x9908b0dfu;
        s[k] = v;
    }
    r->mt_left = N;
    r->mt_next = 0;
}

uint32_t sd_rng_next_u32(sd_rng *r)
{
    if (--r->mt_left == 0) mt_twist(r);
    uint32_t y = r->mt[r->mt_next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* at::uniform_real_distribution<float>(0, 1): the low 24 bits of one output times 2^-24. */
static float uniform_f32(sd_rng *r)
{
    return (float)(sd_rng_next_u32(r) & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

/* at::uniform_real_distribution<double>(0, 1): random64() = first output << 32 | second,
 * low 53 bits times 2^-53. */
static double uniform_f64(sd_rng *r)
{
    uint64_t a = sd_rng_next_u32(r);
    uint64_t b = sd_rng_next_u32(r);
    uint64_t v = (a << 32) | b;
    return (double)(v & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------ avx_mathfun.h, one lane */

static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* log256_ps (Cephes logf as vectorised by Pommier/Garberoglio, vendored in PyTorch's
 * aten/src/ATen/native/cpu/avx_mathfun.h) for x > 0, one lane at a time. PyTorch's build
 * (GCC, -mfma via the AVX2 CPU_CAPABILITY flags) contracts the polynomial's multiply-adds, the
 * `y*z + e*q1` and `e*q2 + x` steps; docs/SEMANTICS.md §8.1 lists them and the golden noise
 * confirms them. */
static float cephes_logf(float x)
{
    const float SQRTHF = (float)0.707106781186547524;
    const float p0 = 7.0376836292E-2f, p1 = -1.1514610310E-1f, p2 = 1.1676998740E-1f,
                p3 = -1.2420140846E-1f, p4 = 1.4249322787E-1f, p5 = -1.6668057665E-1f,
                p6 = 2.0000714765E-1f, p7 = -2.4999993993E-1f, p8 = 3.3333331174E-1f;
    const float q1 = -2.12194440e-4f, q2 = 0.693359375f;

    float min_norm = f32_from_bits(0x00800000u);
    if (!(x >= min_norm)) x = min_norm; /* _mm256_max_ps(x, min_norm): denormals cut off */
    uint32_t bits = f32_bits(x);
    int32_t imm0 = (int32_t)(bits >> 23) - 0x7f;
    x = f32_from_bits((bits & ~0x7f800000u) | f32_bits(0.5f)); /* mantissa in [0.5, 1) */
    float e = (float)imm0;
    e = e + 1.0f;

    int below = x < SQRTHF;
    float tmp = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + tmp;

    float z = x * x;
    float y = fmaf(p0, x, p1);
    y = fmaf(y, x, p2);
    y = fmaf(y, x, p3);
    y = fmaf(y, x, p4);
    y = fmaf(y, x, p5);
    y = fmaf(y, x, p6);
    y = fmaf(y, x, p7);
    y = fmaf(y, x, p8);
    y = y * x;
    y = fmaf(y, z, e * q1);
    tmp = z * 0.5f;
    y = y - tmp;
    x = x + y;
    x = fmaf(e, q2, x);
    return x;
}

/* sincos256_ps for one lane, same source and fusions (DP1..DP3 range reduction, polynomial
 * steps, `y*z - z/2` in the cosine, `y*x + x` in the sine). The selects and sign flips are
 * written as the vector code does them (masked adds of +0), which matters only for zeros. */
static void cephes_sincosf(float xin, float *s_out, float *c_out)
{
    const float DP1 = -0.78515625f, DP2 = -2.4187564849853515625e-4f, DP3 = -3.77489497744594108e-8f;
    const float sp0 = -1.9515295891E-4f, sp1 = 8.3321608736E-3f, sp2 = -1.6666654611E-1f;
    const float cp0 = 2.443315711809948E-005f, cp1 = -1.388731625493765E-003f, cp2 = 4.166664568298827E-002f;
    const float FOPI = 1.27323954473516f;

    uint32_t sign_sin = f32_bits(xin) & 0x80000000u;
    float x = f32_from_bits(f32_bits(xin) & 0x7fffffffu);
    float y = x * FOPI;
    int32_t j = (int32_t)y;          /* cvttps: truncation */
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sin = ((uint32_t)(j & 4)) << 29;
    int poly_mask = (j & 2) == 0;

    x = fmaf(y, DP1, x);
    x = fmaf(y, DP2, x);
    x = fmaf(y, DP3, x);

    int32_t j4 = j - 2;
    uint32_t sign_cos = ((uint32_t)(~j4 & 4)) << 29;
    sign_sin ^= swap_sin;

    float z = x * x;
    float yc = fmaf(cp0, z, cp1);
    yc = fmaf(yc, z, cp2);
    yc = yc * z;
    float half_z = z * 0.5f;
    yc = fmaf(yc, z, -half_z);
    yc = yc + 1.0f;

    float ys = fmaf(sp0, z, sp1);
    ys = fmaf(ys, z, sp2);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    float ysin2 = poly_mask ? ys : 0.0f;
    float ysin1 = poly_mask ? 0.0f : yc;
    float y2 = ys - ysin2;
    float y1 = yc - ysin1;
    float sn = ysin1 + ysin2;
    float cs = y1 + y2;
    *s_out = f32_from_bits(f32_bits(sn) ^ sign_sin);
    *c_out = f32_from_bits(f32_bits(cs) ^ sign_cos);
}

/* normal_fill_16_AVX2 (aten/src/ATen/native/cpu/DistributionTemplates.h): 16 uniforms in place
 * → 16 normals; element j pairs with j+8. mean 0 / std 1 go through one fmadd (n·1 + 0), which
 * is exact except that it turns −0 into +0. */
static void box_muller16(float *d)
{
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float theta = two_pi * u2;
        float sn, cs;
        cephes_sincosf(theta, &sn, &cs);
        d[j] = radius * cs + 0.0f;
        d[j + 8] = radius * sn + 0.0f;
    }
}

/* at::normal_distribution<double> (ATen/core/DistributionsHelper.h, PyTorch 1.13): two double
 * uniforms u1, u2 → r·cos θ now, r·sin θ cached in the generator for the next value. */
static double normal_f64(sd_rng *r)
{
    if (r->has_next_normal) {
        r->has_next_normal = 0;
        return r->next_normal;
    }
    double u1 = uniform_f64(r);
    double u2 = uniform_f64(r);
    double rad = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    r->next_normal = rad * sin(theta);
    r->has_next_normal = 1;
    return rad * cos(theta);
}

static void randn_cpu(sd_rng *r, float *out, int64_t n)
{
    if (n < 16) {
        /* normal_kernel's TensorIterator path for small tensors. */
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(r);
    for (int64_t i = 0; i + 16 <= n; i += 16) box_muller16(out + i);
    if (n % 16 != 0) {
        /* PyTorch redraws 16 uniforms for the tail and recomputes the last 16 values. */
        float *d = out + n - 16;
        for (int i = 0; i < 16; i++) d[i] = uniform_f32(r);
        box_muller16(d);
    }
}

/* ------------------------------------------------------------------ Philox4x32-10 (A1111) */

static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)c[0] * M0;
        uint64_t p1 = (uint64_t)c[2] * M1;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
        k0 += W0;
        k1 += W1;
    }
}

static void randn_philox(sd_rng *r, float *out, int64_t n)
{
    /* modules/rng_philox.py: numpy float32 constants 2.3283064e-10 (= 2^-32 exactly in float32)
     * and float32(2.3283064e-10 · 6.2831855); uint32 × float32 promotes to float64, so the
     * Box–Muller runs in double and only the result is rounded to float32. */
    const double inv32 = (double)(float)2.3283064e-10;
    const double inv32_2pi = (double)(float)(2.3283064e-10 * 6.2831855);
    const double half_inv32 = (double)((float)2.3283064e-10 / 2.0f);
    const double half_inv32_2pi = (double)((float)(2.3283064e-10 * 6.2831855) / 2.0f);
    uint32_t k0 = (uint32_t)r->seed, k1 = (uint32_t)(r->seed >> 32);
    uint32_t off = (uint32_t)r->offset;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c[4] = {off, 0u, (uint32_t)i, 0u};
        philox4x32_10(c, k0, k1);
        double u = (double)c[0] * inv32 + half_inv32;
        double v = (double)c[1] * inv32_2pi + half_inv32_2pi;
        double s = sqrt(-2.0 * log(u));
        out[i] = (float)(s * sin(v));
    }
    r->offset++;
}

/* ------------------------------------------------------------------ public */

void sd_rng_init(sd_rng *r, int kind, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->kind = kind == SD_RNG_CUDA ? SD_RNG_CUDA : SD_RNG_CPU;
    r->seed = seed;
    mt_seed(r, (uint32_t)seed);
    r->has_next_normal = 0;
    r->offset = 0;
}

void sd_rng_randn(sd_rng *r, float *out, int64_t n)
{
    if (n <= 0) return;
    if (r->kind == SD_RNG_CUDA)
        randn_philox(r, out, n);
    else
        randn_cpu(r, out, n);
}

int sd_rng_kind_parse(const char *name, int *kind)
{
    if (!name) return -1;
    if (!strcasecmp(name, "cpu")) { *kind = SD_RNG_CPU; return 0; }
    if (!strcasecmp(name, "cuda") || !strcasecmp(name, "gpu")) { *kind = SD_RNG_CUDA; return 0; }
    return -1;
}

const char *sd_rng_kind_name(int kind)
{
    return kind == SD_RNG_CUDA ? "cuda" : "cpu";
}
