/* sdgen/vae.h — the Stable Diffusion autoencoder (CompVis AutoencoderKL, "first_stage_model."),
 * addressed by its LDM weight names (diffusers folders are translated by the loader).
 *
 *     sd_tensor img;                                   // z already divided by the scale factor
 *     if (sd_vae_decode(&m, &arena, z, &img, &err)) ...
 *     sd_tensor mom;                                   // img2img: encode, then sample
 *     if (sd_vae_encode(&m, &arena, image_in, &mom, &err)) ...
 *     sd_vae_sample(mom.data, eps, h * w, m.vae.z_channels, m.vae.scale_factor, latent);
 */
#ifndef SDGEN_VAE_H
#define SDGEN_VAE_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pixels per latent pixel along a side: 2^(levels − 1) (8 for the SD VAEs). */
static inline int sd_vae_factor(const sd_vae_config *v) { return 1 << (v->n_levels - 1); }

/* The architecture (m->vae) from the shapes of a single-file checkpoint's tensors. */
int sd_vae_derive(sd_model *m, sd_err *err);
/* Every tensor the encoder/decoder read exists with the shape the architecture implies. */
int sd_vae_check(const sd_model *m, sd_err *err);
/* Multiply-adds ×2 of decoding one h×w latent (convolutions, attention products). */
double sd_vae_decode_flops(const sd_vae_config *v, int64_t h, int64_t w);

/* Decoder: z [n, z_channels, h, w] (latent already divided by the scale factor, docs/SEMANTICS.md §10) ->
 * img [n, 3, h·2^(levels−1), w·2^(levels−1)] in the arena (nominally [−1, 1], not clamped).
 * post_quant_conv is applied first. Batch items are decoded one after another, so peak memory
 * is that of one image. Returns 0, or -1 with err (SD_ERR_INPUT / SD_ERR_NOMEM). */
int sd_vae_decode(sd_model *m, sd_arena *a, sd_tensor z, sd_tensor *img, sd_err *err);

/* Tiled decoder (diffusers AutoencoderKL.tiled_decode, enable_vae_tiling): z is cut into tiles of
 * tile_latent latent pixels (the last ones on each axis may be smaller) whose starts are multiples of
 * tile_latent − overlap_latent; each is decoded alone and blended linearly into its upper and left
 * neighbours over overlap_latent·8 pixels. diffusers' default is tile 64, overlap 16 (factor 0.25).
 * Needs 4 <= tile_latent and 0 <= overlap_latent <= tile_latent/2. Memory: the image, two rows of
 * decoded 3-channel tiles and one tile's decoder activations, so the peak does not grow with the
 * image. Each tile normalises (GroupNorm) over its own pixels, so the result differs slightly from
 * sd_vae_decode (docs/VAE_TILING.md gives measured sizes); when the latent fits in one tile it IS
 * sd_vae_decode, bit for bit. Same result shape and errors as sd_vae_decode. */
int sd_vae_decode_tiled(sd_model *m, sd_arena *a, sd_tensor z, int tile_latent, int overlap_latent,
                        sd_tensor *img, sd_err *err);

/* Bytes of arena the decode of z [n, z_channels, h, w] reserves (sd_vae_decode when tile_latent
 * is 0 or the latent fits in one tile, else sd_vae_decode_tiled), the image included: for
 * memory checks before a run. 0 for arguments the decoders refuse. */
size_t sd_vae_decode_bytes(const sd_model *m, int64_t n, int64_t h, int64_t w, int tile_latent, int overlap_latent);

/* Encoder: img [n, 3, H, W] in [−1, 1] (H, W multiples of 2^(levels−1)) ->
 * moments [n, 2·z_channels, h, w] after quant_conv: channels 0..z−1 = mean, z..2z−1 = logvar
 * (not clamped). */
int sd_vae_encode(sd_model *m, sd_arena *a, sd_tensor img, sd_tensor *moments, sd_err *err);

/* Posterior sample of ONE batch item (diffusers DiagonalGaussianDistribution.sample, docs/SEMANTICS.md §9.3):
 * out[c, i] = scale · (mean[c, i] + exp(0.5 · clamp(logvar[c, i], −30, 20)) · eps[c, i]),
 * each operation rounded to float32 in that order (no fused multiply-add).
 * moments: [2·z_channels, plane], eps and out: [z_channels, plane]; plane = h·w. */
void sd_vae_sample(const float *moments, const float *eps, int64_t per_channel_plane, int z_channels,
                   float scale, float *out);

#ifdef __cplusplus
}
#endif
#endif
