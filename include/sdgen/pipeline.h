/* sdgen/pipeline.h — text-to-image and image-to-image, as diffusers' StableDiffusion pipelines.
 *
 *     sd_pipeline p; sd_err err;
 *     if (sd_pipeline_open(&p, "model.safetensors", NULL, &err)) ...   // model + tokenizer
 *     sd_gen_opts o; sd_gen_opts_default(&o);
 *     o.prompt = "a lighthouse at dusk"; o.seed = 42;
 *     sd_gen_result r;
 *     if (sd_generate(&p, &o, &r, &err)) ...                            // r.rgb: r.w × r.h × 3
 *     sd_gen_result_free(&r); sd_pipeline_close(&p);
 *
 * The order of operations, the random draws and the float32 arithmetic follow
 * docs/SEMANTICS.md (diffusers 0.25.1), so the same seed gives the same image.
 */
#ifndef SDGEN_PIPELINE_H
#define SDGEN_PIPELINE_H

#include <signal.h>
#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/embeddings.h"
#include "sdgen/lora.h"
#include "sdgen/model.h"
#include "sdgen/sched.h"
#include "sdgen/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sd_image;

typedef struct sd_pipeline {
    sd_model model;
    sd_tokenizer *tok;
    sd_arena arena;
    int blas_warm;      /* OpenBLAS's per-thread buffers are mapped (sd_blas_warm ran) */
    struct sd_taesd *taesd; /* --vae-decoder: the tiny autoencoder used instead of the VAE, or NULL */
    sd_lora_state lora; /* the LoRAs merged into the model's weights now (lora.h) */
    char lora_hashes[SD_LORA_MAX][13]; /* their short hashes, in the applied order */
    sd_embeddings emb;  /* the textual-inversion words of emb_dir (embeddings.h) */
    char *emb_dir;      /* the folder emb was read from (NULL: not read yet) */
} sd_pipeline;

/* Progress callback: called after each model call (i from 1 to n; n = steps, or 2·steps − 1 for the
 * samplers that evaluate the model twice per step: heun, dpm2, dpm2_a). */
typedef void (*sd_progress_fn)(void *user, int step, int n_steps, double seconds_this_step);

typedef struct sd_gen_opts {
    const char *prompt;
    const char *negative_prompt;
    int negative_given;            /* the user gave one (even ""): SDXL encodes it, else conditions on zeros */
    int width, height;             /* multiples of 8; img2img: 0 = the init image's size */
    int steps;
    float cfg_scale;               /* 1 = no unconditional pass */
    uint64_t seed;
    sd_sampler sampler;
    sd_schedule schedule;
    sd_spacing spacing;
    double eta;                    /* ddim's η (0 = deterministic; only ddim has one) */
    sd_prediction prediction;      /* SD_PRED_UNKNOWN = the model's */
    int rng_kind;                  /* SD_RNG_CPU / SD_RNG_CUDA */
    int clip_skip;                 /* 1 = no skipping */
    int original_w, original_h;    /* SDXL size conditioning (0 = the image size) */
    int crop_top, crop_left;       /* SDXL crop conditioning (default 0, 0) */
    int target_w, target_h;        /* SDXL target size (0 = the image size) */
    int weighting;                 /* A1111 prompt weights (1) or literal (0) */
    const char *init_image;        /* NULL = txt2img; else the init image file (or the name of init_pixels) */
    const struct sd_image *init_pixels; /* init image already in memory (then init_image only names it) */
    double strength;               /* img2img */
    const char *dump_dir;          /* NULL = no .npy dumps */
    size_t max_memory;             /* 0 = what the machine has available */
    int vae_tile;                  /* --vae-tiling: decode in tiles of this many latent pixels (0 = untiled; diffusers 64) */
    int vae_tile_overlap;          /* latent pixels blended between tiles (diffusers: tile/4 = 16) */
    sd_progress_fn progress;
    void *progress_user;
    volatile sig_atomic_t *interrupted; /* checked between steps; non-zero stops with code 130 */
    const char *preview_path;      /* live preview PNG, replaced atomically every preview_every steps (NULL: none) */
    int preview_every;             /* >= 1 when preview_path is set */
    /* LoRAs (docs/LORA.md): `<lora:NAME:W>` tags in the prompts are removed before tokenizing and looked
     * up in lora_dir (NULL: "loras" beside the model); `loras` adds more (--lora, a batch line's "loras").
     * lora_hashes: the infotext's "Lora hashes" value (sd_gen_result.lora_hashes), NULL: none. */
    const char *lora_dir;
    const sd_lora_list *loras;
    const char *lora_hashes;
    sd_lora_mode lora_mode;        /* SD_LORA_AUTO (default), SD_LORA_MERGE or SD_LORA_FLY (sdgen/lora.h) */
    const char *embeddings_dir;    /* textual-inversion embeddings (NULL: "embeddings" beside the model) */
} sd_gen_opts;

typedef struct sd_gen_result {
    uint8_t *rgb;                  /* w*h*3, malloc'ed */
    int w, h;
    sd_prediction prediction;      /* what was used */
    int chunks_cond, chunks_uncond;/* 75-token chunks of the prompts */
    int init_resized;              /* img2img: the init image was resized to multiples of 8 */
    int steps_run;
    double t_text, t_denoise, t_decode, t_encode;
    char *lora_hashes;             /* A1111 "Lora hashes" value ("name: hash, …"), malloc'd; NULL: no LoRA */
    char *lora_warning;            /* keys of a LoRA loaded for this image that were not applied; NULL: none */
    double t_lora;                 /* seconds spent loading and merging LoRAs for this image */
} sd_gen_result;

void sd_gen_opts_default(sd_gen_opts *o);
/* Open the model, then find its vocabulary (vocab_path: --vocab or NULL). */
int sd_pipeline_open(sd_pipeline *p, const char *model_path, const char *vocab_path, sd_err *err);
void sd_pipeline_close(sd_pipeline *p);
/* Decode with madebyollin's tiny autoencoder (sdgen/taesd.h) instead of the model's VAE: latents as they
 * are (scaling factor 1.0), and image-to-image through its encoder when it has one (no posterior draw);
 * without an encoder the VAE encodes. Its latent channels must be the model's. Faults: exit code 2. */
int sd_pipeline_set_taesd(sd_pipeline *p, const char *path, sd_err *err);
/* The folder <lora:NAME> tags are looked up in: `given` (sd_gen_opts.lora_dir) when set, else loras/ beside
 * the model. */
void sd_pipeline_lora_dir(const sd_pipeline *p, const char *given, char *out, size_t n);
/* Check options against the model before any work (steps, sizes, strength, the schedule's
 * timesteps, memory: available memory or --max-memory, and the address-space limit). */
int sd_gen_validate(const sd_pipeline *p, const sd_gen_opts *o, sd_err *err);
/* Estimated peak bytes of activations for a U-Net / VAE call at this size. */
size_t sd_gen_memory_estimate(const sd_model *m, int width, int height, int batch, int vae_tile, int vae_tile_overlap);
int sd_generate(sd_pipeline *p, const sd_gen_opts *o, sd_gen_result *r, sd_err *err);
void sd_gen_result_free(sd_gen_result *r);

/* The stages of sd_generate, for callers that time them (bench) or drive the loop themselves. */

/* The prompt (and, when uncond is non-NULL, the negative prompt) through the family's conditioner,
 * made the same length (A1111 pad_cond_uncond); the text encoder's pages are given back after. */
struct sd_cond;
int sd_pipeline_condition(sd_pipeline *p, const sd_gen_opts *o, struct sd_cond *cond, struct sd_cond *uncond,
                          sd_err *err);
/* The six SDXL size ids [original h, w, crop top, left, target h, w] of a width × height image. */
void sd_gen_time_ids(const sd_gen_opts *o, int width, int height, float ids[6]);
/* The denoiser's extra conditioning vectors (SDXL: pooled text + size ids) of cond and uncond (may be
 * NULL) for a width × height image; nothing for families without one. */
int sd_pipeline_vectors(sd_pipeline *p, const sd_gen_opts *o, int width, int height, struct sd_cond *cond,
                        struct sd_cond *uncond, sd_err *err);
/* One guided model output g [1, C, h, w] for the scaled latent x [1, C, h, w] at timestep t:
 * with uncond, the denoiser runs once on the batch [uncond; cond] and g = u + cfg·(c − u) in
 * float32 (diffusers); without, g is the conditional output. dump_dir non-NULL: the call's input
 * and output are written as unet0_*.npy (int_timesteps: the timestep as int32). */
int sd_pipeline_guided(sd_pipeline *p, sd_tensor x, float t, const struct sd_cond *cond, const struct sd_cond *uncond,
                       float cfg, float *g, const char *dump_dir, int int_timesteps, sd_err *err);

/* The model used when none is named: $SDGEN_MODEL, else the demo model in the install data folder
 * (<prefix>/share/sdgen/models/demo.safetensors), else in the source tree the build came from. */
int sd_default_model_path(char *out, size_t n, sd_err *err);

/* The A1111 `parameters` text (sdgen/params.h) of one image made with o at width x height: what the
 * CLI and the library write into their PNGs. model_hash (10 hex digits) and model_name may be NULL. */
int sd_gen_infotext(const sd_gen_opts *o, int width, int height, const char *model_hash, const char *model_name,
                    char **out, sd_err *err);

/* Decoder output → 8-bit pixels: round_half_even(clamp(x/2 + 0.5, 0, 1)·255) in float32,
 * NCHW [1,3,h,w] → HWC RGB (docs/SEMANTICS.md §10). */
void sd_image_float_to_rgb8(const float *img, int w, int h, uint8_t *rgb);

#ifdef __cplusplus
}
#endif
#endif
