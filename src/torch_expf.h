/* torch_expf.h — expf exactly as PyTorch's float32 CPU kernels compute it.
 *
 * ATen's Vectorized<float>::exp is SLEEF's Sleef_expf8_u10 (AVX2 build, multiply-adds fused):
 * q = rint(d / ln 2), a two-part Cody-Waite reduction s = d − q·ln 2, a degree-6 polynomial in s,
 * then scaling by 2^q in two halves (2^(q>>1) · 2^(q−(q>>1))) so that no intermediate power of
 * two overflows and a subnormal result rounds once; d < −104 gives 0 and d > 100 gives +inf, as
 * SLEEF selects. glibc's expf differs from it by one ulp on a few percent of inputs, which moves
 * the timestep embedding (exp(−ln(10000)·j/half) times t ≈ 1000), the VAE posterior's std and the
 * schedules' σ off the reference bits. One lane here (the portable kernels, cpu_loops.h, vectorise
 * it where the compiler can); cpu_avx2.c has the 8-lane version and attn_avx512.c the 16-lane one,
 * each the same operations in the same order. fmaf() rounds once on every machine (an FMA
 * instruction, or glibc's correctly rounded fmaf), so every path gives the same bits. */
#ifndef SDGEN_TORCH_EXPF_H
#define SDGEN_TORCH_EXPF_H

#include <math.h>
#include <stdint.h>

static inline float sd_expf(float d)
{
    if (d != d) return d;           /* NaN stays NaN (and the int conversion below stays defined) */
    if (d < -104.0f) return 0.0f;
    if (d > 100.0f) return INFINITY;
    const int q = (int)rintf(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
    const float qf = (float)q;
    float s = fmaf(qf, -0.693145751953125f, d);
    s = fmaf(qf, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.0f + fmaf(s * s, u, s);
    union { uint32_t u; float f; } lo = {.u = (uint32_t)((q >> 1) + 127) << 23},
                                   hi = {.u = (uint32_t)((q - (q >> 1)) + 127) << 23};
    return u * lo.f * hi.f;
}

#endif
