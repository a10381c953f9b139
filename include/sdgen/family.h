/* sdgen/family.h — model families: how a checkpoint is recognised and what it implies.
 *
 * The networks derive their sizes from the tensors (unet.c, vae.c, clip.c); a family adds what
 * the shapes do not say: which text tower it uses, how attention heads are counted, the VAE's
 * latent scale, the training noise schedule, the prediction type when the file does not state
 * it, and the default image size. Each family is one file (family_sd1.c, family_sd2.c,
 * family_sdxl.c); sd_family_table lists them, and adding one is adding a file and a row
 * (docs/ARCHITECTURE.md, "Adding a family").
 */
#ifndef SDGEN_FAMILY_H
#define SDGEN_FAMILY_H

#include "sdgen/cond.h"
#include "sdgen/model.h"
#include "sdgen/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_family_desc {
    sd_family id;
    const char *name;    /* "sd1", as `sdgen info` and --family print it */
    const char *display; /* "SD 1.x" */
    int supported;       /* the generator runs it */
    /* Whether a single-file checkpoint's tensor names (and metadata) are this family's. */
    int (*matches)(const sd_model *m);
    /* Whether a diffusers folder's configs (already read into m) are this family's. */
    int (*matches_folder)(const sd_model *m);
    /* What the family fixes beyond the shapes, before the networks derive their sizes (the text
     * tower's kind) and after (heads rule, latent scale). */
    void (*before_derive)(sd_model *m);
    void (*after_derive)(sd_model *m);
    /* The prediction type (and why) when neither a scheduler config nor the metadata says. */
    void (*default_prediction)(sd_model *m);
    /* The image side used when the user gives none (modelspec.resolution wins over it). */
    int (*default_side)(const sd_model *m, sd_prediction pred);

    /* The conditioner: a prompt → the conditioning the denoiser attends to (cond.h). */
    sd_cond_fn condition;
    /* The denoiser: one model evaluation on a batch of latents x at timesteps t with context
     * [n, L, D] and, for families that have one, the vector y [n, Y]; out (eps or v, as trained)
     * in the arena. */
    int (*denoise)(sd_model *m, sd_arena *a, sd_tensor x, const float *t, sd_tensor context, sd_tensor y,
                   sd_tensor *out, sd_err *err);
    /* The extra conditioning vector y [adm_in] of one prompt for the denoiser (NULL: none), from its
     * conditioning and the six size ids [original h, w, crop top, left, target h, w]. */
    int (*vector)(sd_model *m, sd_arena *a, const sd_cond *c, const float ids[6], float *y, sd_err *err);
    /* A negative prompt that was not given conditions on zeros, not on the encoded empty prompt
     * (diffusers' force_zeros_for_empty_prompt). */
    int zeros_without_negative;
    /* LDM prefix of the text encoder(s), whose pages are given back once the prompt is encoded. */
    const char *text_prefix;
} sd_family_desc;

extern const sd_family_desc sd_family_sd1, sd_family_sd2, sd_family_sdxl;

/* The description of family f (NULL for SD_FAMILY_UNKNOWN). */
const sd_family_desc *sd_family_get(sd_family f);
/* The first family whose matches() accepts the checkpoint, else NULL. */
const sd_family_desc *sd_family_detect(const sd_model *m);
/* The first family whose matches_folder() accepts the diffusers folder, else NULL. */
const sd_family_desc *sd_family_detect_folder(const sd_model *m);

/* Default image size for a model and prediction: modelspec.resolution "WxH" when the file states
 * one, else the family's default side. */
void sd_family_default_size(const sd_model *m, sd_prediction pred, int *w, int *h);

/* Shared by the SD 1.x/2.x-style families: the LDM training schedule (v1-inference.yaml,
 * v2-inference.yaml: linear_start 0.00085, linear_end 0.012, "scaled_linear", 1000 steps) with
 * diffusers' steps_offset 1. */
void sd_family_ldm_schedule(sd_sched_config *s);

#ifdef __cplusplus
}
#endif
#endif
