/* cpu_avx512.c — the AVX-512 kernel table (x86-64 only): the AVX2 table (cpu_avx2.c) with the
 * attention products of attn_avx512.c and a 16-wide F16 conversion. cpu.c selects it when the
 * CPU has AVX-512F besides AVX2 + FMA + F16C. The functions carry their target attribute, so
 * this file needs no compiler flags of its own. */
#if !defined(__x86_64__)
#error "cpu_avx512.c is for x86-64 only (CMakeLists.txt leaves it out elsewhere)"
#endif

#include <immintrin.h>

#include "ops_internal.h"
#include "sdgen/safetensors.h"

__attribute__((target("avx512f"))) static void avx512_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = sd_f16_to_f32_1(src[i]);
}

void sd_cpu_fill_avx512(sd_cpu_kernels *k)
{
    sd_cpu_fill_avx2(k);
    k->name = "avx512";
    k->f16_to_f32 = avx512_f16_to_f32;
    k->attn_max_d = 160;
    k->attn_scores = sd_attn_scores_avx512;
    k->attn_softmax_row = sd_softmax_row_avx512;
    k->attn_pv = sd_attn_pv_avx512;
}
