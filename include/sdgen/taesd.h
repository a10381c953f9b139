/* sdgen/taesd.h — madebyollin's tiny autoencoder (TAESD for SD 1.x/2.x, TAESDXL for SDXL: the same
 * network with other weights), as diffusers' AutoencoderTiny runs it (docs/SEMANTICS.md "TAESD").
 *
 *     sd_taesd t; sd_err err;
 *     if (sd_taesd_open(&t, "taesd/", &err)) ...          // folder, or taesd_decoder.safetensors
 *     sd_tensor img;                                      // z: the U-Net's latents, NOT divided by 0.18215
 *     if (sd_taesd_decode(&t, &arena, z, &img, &err)) ... // img in [-1, 1] nominally
 *     sd_taesd_close(&t);
 *
 * Files: a diffusers AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors, tensors
 * "decoder.layers.K.*" / "encoder.layers.K.*"), one such .safetensors file, or the original
 * taesd_decoder.safetensors / taesd_encoder.safetensors (madebyollin/taesd taesd.py Decoder()/Encoder():
 * decoder key "<K+1>.*" is diffusers' "decoder.layers.K.*" because the original's layer 0 is the clamp;
 * encoder keys are the same indices). Given a decoder file, an encoder file beside it whose name has
 * "encoder" where the decoder's has "decoder" is opened too. Weights are addressed by the diffusers names.
 */
#ifndef SDGEN_TAESD_H
#define SDGEN_TAESD_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/model.h"
#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_TAESD_MAX_LAYERS 64

typedef enum sd_taesd_op {
    SD_TAESD_CONV,      /* 3×3 conv with bias, stride 1 (first and last layer) */
    SD_TAESD_BLOCK,     /* ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x), 3×3 convs with bias */
    SD_TAESD_UP_CONV,   /* decoder: nearest ×2, then a 3×3 conv without bias */
    SD_TAESD_DOWN_CONV  /* encoder: 3×3 conv without bias, stride 2, padding 1 */
} sd_taesd_op;

typedef struct sd_taesd_layer {
    sd_taesd_op op;
    int index;    /* K of "<coder>.layers.K." */
    int cin, cout;
} sd_taesd_layer;

typedef struct sd_taesd_coder {
    int n;        /* layers holding weights; 0: this half is absent */
    sd_taesd_layer layer[SD_TAESD_MAX_LAYERS];
    int factor;   /* pixels per latent pixel along a side (8 for TAESD) */
} sd_taesd_coder;

typedef struct sd_taesd {
    sd_model m;           /* the weight table (m.path: the path as given) */
    sd_taesd_coder dec, enc;
    int latent_channels;  /* 4 for TAESD and TAESDXL */
    int image_channels;   /* 3 */
} sd_taesd;

/* Open, derive the layer lists from the tensors present, check every shape. Faults: exit code 2. */
int sd_taesd_open(sd_taesd *t, const char *path, sd_err *err);
void sd_taesd_close(sd_taesd *t);
/* The layer lists from the tensor names and shapes (called by sd_taesd_open). */
int sd_taesd_derive(sd_taesd *t, sd_err *err);
/* Every tensor the layers read exists with the shape they imply. */
int sd_taesd_check(const sd_taesd *t, sd_err *err);

/* Multiply-adds ×2 of decoding / encoding one h×w latent. */
double sd_taesd_decode_flops(const sd_taesd *t, int64_t h, int64_t w);
double sd_taesd_encode_flops(const sd_taesd *t, int64_t h, int64_t w);
/* Arena bytes a decode of [n, C, h, w] / an encode of [n, 3, H, W] reserves (result included);
 * 0 for sizes the coders refuse. */
size_t sd_taesd_decode_bytes(const sd_taesd *t, int64_t n, int64_t h, int64_t w);
size_t sd_taesd_encode_bytes(const sd_taesd *t, int64_t n, int64_t H, int64_t W);

/* DecoderTiny's soft clamp: out = tanh(z / 3) · 3, each operation rounded to float32. out may be z. */
void sd_taesd_soft_clamp(const float *z, float *out, int64_t n);
/* The decoder's layers on already clamped latents zc [n, C, h, w] -> raw [n, 3, 8h, 8w] (nominally
 * [0, 1]; the golden cases' taesd_raw). */
int sd_taesd_decode_layers(sd_taesd *t, sd_arena *a, sd_tensor zc, sd_tensor *raw, sd_err *err);
/* The whole decoder: soft clamp, layers, then img = raw·2 − 1 (AutoencoderTiny's [−1, 1] convention;
 * two float32 operations, not fused). z are the denoiser's latents as they are (scaling_factor 1.0). */
int sd_taesd_decode(sd_taesd *t, sd_arena *a, sd_tensor z, sd_tensor *img, sd_err *err);
/* raw -> image in place: x·2 − 1 (DecoderTiny's x.mul(2).sub(1), two float32 operations, not fused). */
void sd_taesd_raw_to_image(float *x, int64_t n);
/* The encoder: img [n, 3, H, W] in [−1, 1], H and W multiples of 8 -> latents [n, C, H/8, W/8]
 * (EncoderTiny on (img + 1) / 2; deterministic: no posterior sample, already in the denoiser's scale). */
int sd_taesd_encode(sd_taesd *t, sd_arena *a, sd_tensor img, sd_tensor *latents, sd_err *err);

/* AUTOMATIC1111's "Approx cheap" live preview (modules/sd_vae_approx.py cheap_approximation): a fixed
 * linear map of each latent pixel's 4 channels to RGB, at latent resolution. sdxl selects the SDXL
 * coefficients. z [4, h, w] -> rgb_float [3, h, w] in the decoder's [−1, 1] convention. */
void sd_latent_preview_cheap(const float *z, int64_t h, int64_t w, int sdxl, float *rgb_float);

#ifdef __cplusplus
}
#endif
#endif
