/* family_sdxl.c — Stable Diffusion XL (Stability sd_xl_base.yaml; base 1.0, SDXL-Turbo and the
 * fine-tunes built on it), as diffusers' StableDiffusionXLPipeline runs it (docs/SEMANTICS.md).
 *
 * Files: the single-file SGM layout — conditioner.embedders.0.transformer.text_model.* (CLIP ViT-L,
 * transformers names), conditioner.embedders.1.model.* (OpenCLIP ViT-bigG with text_projection),
 * model.diffusion_model.* (U-Net with label_emb), first_stage_model.* (the SD VAE); or a diffusers
 * folder (text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet with addition_embed_type
 * "text_time", vae, scheduler), whose names diffusers.c maps onto these.
 * Text: both towers' penultimate hidden states without the final LayerNorm, concatenated along the
 * features (768 + 1280 = 2048); the pooled vector of the second (sd_text_encode). Encoder 1 pads with
 * <|endoftext|>, encoder 2 with id 0. The U-Net adds label_emb(y) to its time embedding, where
 * y = [pooled | sinusoid(original h, w, crop top, left, target h, w)] (diffusers add_time_ids,
 * "text_time" additional embedding). Latents are scaled by 0.13025. Every sampler takes the base
 * model's scheduler config, so its spacing is "leading" (diffusers builds them from_config). A
 * negative prompt that was not given conditions on zeros (force_zeros_for_empty_prompt). Images
 * are 1024×1024 by default; predictions are eps. */
#include "sdgen/family.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/ops.h"
#include "sdgen/unet.h"

#define SDXL_TEXT1 "conditioner.embedders.0.transformer.text_model."
#define SDXL_TEXT2 "conditioner.embedders.1.model."

static int sdxl_matches(const sd_model *m)
{
    for (int i = 0; i < m->n_weights; i++)
        if (!strncmp(m->weights[i].name, "conditioner.embedders.", 22)) return 1;
    const char *arch = sd_model_meta(m, "modelspec.architecture");
    return arch && strstr(arch, "stable-diffusion-xl") != NULL;
}

/* A diffusers folder whose U-Net takes the "text_time" additional embedding (diffusers.c reads it into
 * adm_in) or that has a second text encoder. */
static int sdxl_matches_folder(const sd_model *m)
{
    return m->unet.adm_in > 0 || m->n_text > 1;
}

static void sdxl_before_derive(sd_model *m)
{
    sd_text_config *t = &m->text[0];
    t->kind = SD_TEXT_CLIP_HF;
    snprintf(t->prefix, sizeof t->prefix, SDXL_TEXT1);
    t->final_norm = 0;
    t->penultimate = 1;
    t = &m->text[1];
    t->kind = SD_TEXT_OPENCLIP;
    snprintf(t->prefix, sizeof t->prefix, SDXL_TEXT2);
    t->final_norm = 0;
    t->penultimate = 1;
}

static void sdxl_after_derive(sd_model *m)
{
    if (m->has_unet && m->unet.num_heads <= 0 && m->unet.head_dim <= 0) m->unet.head_dim = 64;
    if (m->vae.scale_factor == 0) m->vae.scale_factor = 0.13025f; /* sd_xl_base.yaml scale_factor */
    if (!m->sched.from_file) snprintf(m->sched.timestep_spacing, sizeof m->sched.timestep_spacing, "leading");
}

static void sdxl_default_prediction(sd_model *m)
{
    m->prediction = SD_PRED_EPS;
    snprintf(m->prediction_why, sizeof m->prediction_why, "SDXL base models predict noise (eps)");
}

static int sdxl_default_side(const sd_model *m, sd_prediction pred)
{
    (void)m, (void)pred;
    return 1024;
}

/* Both encoders on the prompt (A1111 weighting and chunking in each), their contexts side by side. */
static int sdxl_condition(sd_model *m, sd_arena *a, sd_tokenizer *t, const char *prompt, int weighting, int clip_skip,
                          sd_cond *out, sd_err *err)
{
    memset(out, 0, sizeof *out);
    if (m->n_text < 2) return sd_errf(err, "%s: SDXL needs both text encoders", m->path);
    sd_cond c1, c2;
    if (sd_text_condition_tower(m, 0, a, t, prompt, weighting, clip_skip, 0, &c1, err)) return -1;
    if (sd_text_condition_tower(m, 1, a, t, prompt, weighting, clip_skip, 1, &c2, err)) {
        sd_cond_free(&c1);
        return -1;
    }
    int rc = 0;
    if (c1.n_chunks != c2.n_chunks) {
        rc = sd_errf(err, "the two text encoders chunked the prompt differently (%d vs %d)", c1.n_chunks, c2.n_chunks);
    } else {
        const size_t rows = (size_t)SD_TOK_CONTEXT * (size_t)c1.n_chunks, D = (size_t)c1.dim + (size_t)c2.dim;
        out->data = malloc(rows * D * sizeof(float));
        if (!out->data) rc = sd_errcf(err, SD_ERR_NOMEM, "out of memory (conditioning)");
        for (size_t r = 0; rc == 0 && r < rows; r++) {
            memcpy(out->data + r * D, c1.data + r * (size_t)c1.dim, (size_t)c1.dim * sizeof(float));
            memcpy(out->data + r * D + c1.dim, c2.data + r * (size_t)c2.dim, (size_t)c2.dim * sizeof(float));
        }
        if (rc == 0) {
            out->dim = (int)D;
            out->n_chunks = c1.n_chunks;
            out->n_text_tokens = c1.n_text_tokens;
            out->weighted = c1.weighted;
            out->pooled = c2.pooled;
            out->pooled_dim = c2.pooled_dim;
            c2.pooled = NULL;
        }
    }
    sd_cond_free(&c1);
    sd_cond_free(&c2);
    return rc;
}

/* y = [pooled | sinusoid of each of the six size ids] (diffusers _get_add_time_ids, then the UNet's
 * add_time_proj: Timesteps(A, flip_sin_to_cos=True, 0) on each id, concatenated in id order). */
static int sdxl_vector(sd_model *m, sd_arena *a, const sd_cond *c, const float ids[6], float *y, sd_err *err)
{
    const int P = c->pooled_dim, Y = m->unet.adm_in;
    if (!c->pooled || P <= 0) return sd_errf(err, "SDXL conditioning without a pooled text vector");
    if (Y <= P || (Y - P) % 6 || ((Y - P) / 6) % 2)
        return sd_errf(err, "%s: label_emb takes %d values, which is not the pooled width %d plus six even-sized "
                       "time-id embeddings", m->path, Y, P);
    const int A = (Y - P) / 6; /* addition_time_embed_dim: 256 in SDXL */
    memcpy(y, c->pooled, (size_t)P * sizeof(float));
    sd_scope s = sd_scope_open(a);
    sd_tensor e = sd_timestep_embedding(a, ids, 6, A);
    if (!e.data) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the size conditioning");
    memcpy(y + P, e.data, (size_t)6 * (size_t)A * sizeof(float));
    sd_scope_close(a, s);
    return 0;
}

const sd_family_desc sd_family_sdxl = {
    .id = SD_FAMILY_SDXL,
    .name = "sdxl",
    .display = "SDXL",
    .supported = 1,
    .matches = sdxl_matches,
    .matches_folder = sdxl_matches_folder,
    .before_derive = sdxl_before_derive,
    .after_derive = sdxl_after_derive,
    .default_prediction = sdxl_default_prediction,
    .default_side = sdxl_default_side,
    .condition = sdxl_condition,
    .denoise = sd_unet_forward,
    .vector = sdxl_vector,
    .zeros_without_negative = 1,
    .text_prefix = "conditioner.embedders.",
};
