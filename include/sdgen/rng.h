/* sdgen/rng.h — the random number generators whose normal draws match the reference.
 *
 * Two kinds, selected by --rng (docs/SEMANTICS.md §8):
 *
 *   SD_RNG_CPU   PyTorch's CPU generator (torch.Generator("cpu").manual_seed(seed)) followed by
 *                torch.randn(shape, generator=g, dtype=float32): mt19937 seeded with seed mod 2^32;
 *                draws of m >= 16 values use the 16-wide float32 Box–Muller of PyTorch's AVX2 kernel
 *                (ln/sin/cos as avx_mathfun.h computes them, so the values are bit-exact), draws of
 *                m < 16 values the scalar double-precision path (with its cached second value).
 *   SD_RNG_CUDA  Philox4x32-10 as torch.randn(..., device="cuda") computes it, in the CPU
 *                re-implementation AUTOMATIC1111 ships (modules/rng_philox.py): key = seed,
 *                counter = (offset, 0, i, 0), offset += 1 per draw.
 *
 * One sd_rng_randn() call is one torch.randn call: n is the element count of the whole shape
 * (e.g. 1·4·h·w for a latent). Later draws depend on earlier ones, so the caller must make the
 * draws in the reference order (docs/SEMANTICS.md §8.3).
 *
 *     sd_rng r; sd_rng_init(&r, SD_RNG_CPU, seed);
 *     sd_rng_randn(&r, noise, 4 * h * w);
 */
#ifndef SDGEN_RNG_H
#define SDGEN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_rng_kind { SD_RNG_CPU = 0, SD_RNG_CUDA = 1 } sd_rng_kind;

#define SD_MT_N 624

typedef struct sd_rng {
    int kind;            /* sd_rng_kind */
    uint64_t seed;       /* as given (64-bit) */
    /* SD_RNG_CPU: mt19937 state as PyTorch's at::mt19937 keeps it */
    uint32_t mt[SD_MT_N];
    int mt_left, mt_next;
    int has_next_normal; /* the scalar path caches r·sin θ for the next value (PyTorch's
                            next_double_normal_sample) */
    double next_normal;
    /* SD_RNG_CUDA: Philox offset, +1 per draw */
    uint64_t offset;
} sd_rng;

/* Seed a generator (kind = SD_RNG_CPU or SD_RNG_CUDA; anything else is treated as CPU). */
void sd_rng_init(sd_rng *r, int kind, uint64_t seed);

/* One torch.randn draw of n float32 standard-normal values into out (n <= 0: nothing is drawn,
 * as torch.randn of an empty shape). For SD_RNG_CUDA n must be below 2^32 (the element index is
 * the 32-bit counter word). */
void sd_rng_randn(sd_rng *r, float *out, int64_t n);

/* Next raw 32-bit mt19937 output (SD_RNG_CPU; exposed for tests). */
uint32_t sd_rng_next_u32(sd_rng *r);

/* "cpu" / "cuda" (also accepts "gpu" for cuda, as A1111's "GPU" seed source). 0 ok, -1 unknown. */
int sd_rng_kind_parse(const char *name, int *kind);
const char *sd_rng_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
