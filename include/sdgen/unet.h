/* sdgen/unet.h — the Stable Diffusion 1.x / 2.x denoising U-Net (CompVis LDM UNetModel from
 * openaimodel.py with SpatialTransformer blocks; diffusers UNet2DConditionModel is the same
 * computation), addressed by its LDM weight names under "model.diffusion_model.".
 *
 *     sd_tensor eps;
 *     float t[2] = {751, 751};
 *     if (sd_unet_forward(&m, &arena, latents, t, context, (sd_tensor){0}, &eps, &err)) ...
 *
 * The architecture comes from m->unet (filled by the model loader from tensor shapes or the
 * diffusers config). Latent sizes that are not multiples of 2^(levels−1) are handled as
 * diffusers does: each downsample gives ceil(size/2), and each upsample interpolates
 * (nearest) to the size of the skip connection it is concatenated with.
 */
#ifndef SDGEN_UNET_H
#define SDGEN_UNET_H

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The architecture (m->unet) from the shapes of a single-file checkpoint's tensors. */
int sd_unet_derive(sd_model *m, sd_err *err);
/* Every tensor the forward pass reads exists with the shape the architecture implies. */
int sd_unet_check(const sd_model *m, sd_err *err);

/* One U-Net evaluation.
 *   x       [n, in_channels, h, w] latents (h, w ≥ 1, at most SD_UNET_MAX_SIDE)
 *   t       n timesteps (may be fractional, e.g. the Euler samplers' linspace grid)
 *   context [n, L, context_dim] text embeddings (L ≥ 1, usually 77·k)
 *   y       [n, adm_in] the extra conditioning vector of models with label_emb (SDXL), else empty
 *   out     [n, out_channels, h, w], allocated in the arena a (eps or v, as trained)
 * The model's weights are converted to f32 on first use. Activations are taken from the arena;
 * running out of memory gives SD_ERR_NOMEM (the call installs its own arena guard and restores
 * the caller's afterwards). Returns 0, or -1 with err (SD_ERR_INPUT for bad shapes or missing
 * weights, SD_ERR_NOMEM). */
int sd_unet_forward(sd_model *m, sd_arena *a, sd_tensor x, const float *t, sd_tensor context, sd_tensor y,
                    sd_tensor *out, sd_err *err);

/* Multiply-adds ×2 of one forward pass per batch item on an h×w latent with n_ctx context tokens
 * (convolutions, linear layers and attention products; norms and activations are not counted). */
double sd_unet_flops(const sd_unet_config *c, int64_t h, int64_t w, int64_t n_ctx);
/* Arena bytes one forward pass of batch n needs (activations and the weights converted per use):
 * what sd_unet_forward reserves, and what a caller checks against the memory it has. */
size_t sd_unet_memory_bytes(const sd_model *m, int64_t n, int64_t h, int64_t w, int64_t n_ctx);

/* Largest accepted latent side (an 8192-pixel image). */
#define SD_UNET_MAX_SIDE 1024

#ifdef __cplusplus
}
#endif
#endif
