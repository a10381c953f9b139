/* family_sd1.c — Stable Diffusion 1.x (CompVis v1-inference.yaml; 1.4, 1.5 and their fine-tunes).
 *
 * Text: OpenAI CLIP ViT-L/14 in transformers' names under cond_stage_model.transformer.text_model.,
 * padded with <|endoftext|>; U-Net attention with 8 heads whatever the width (num_heads: 8);
 * VAE latents scaled by 0.18215 (scale_factor); noise prediction (eps); 512×512 images. */
#include "sdgen/family.h"
#include "sdgen/unet.h"

#include <stdio.h>
#include <string.h>

static int has_prefix(const sd_model *m, const char *prefix)
{
    const size_t n = strlen(prefix);
    for (int i = 0; i < m->n_weights; i++)
        if (!strncmp(m->weights[i].name, prefix, n)) return 1;
    return 0;
}

static int sd1_matches(const sd_model *m)
{
    if (has_prefix(m, SD_PREFIX_CLIP)) return 1;
    const char *arch = sd_model_meta(m, "modelspec.architecture");
    /* No text encoder in the file: the metadata, else a U-Net with SD 1.x's conv projections and
     * 768-wide context. */
    if (arch) return strstr(arch, "stable-diffusion-v1") != NULL;
    return m->has_unet && !m->unet.linear_proj && m->unet.context_dim != 1024;
}

/* A folder whose text encoder pads with <|endoftext|> and whose U-Net has conv projections. */
static int sd1_matches_folder(const sd_model *m)
{
    return !(m->unet.linear_proj || m->text[0].pad_id == 0 || m->unet.context_dim == 1024);
}

static void sd1_before_derive(sd_model *m)
{
    sd_text_config *t = &m->text[0];
    t->kind = SD_TEXT_CLIP_HF;
    snprintf(t->prefix, sizeof t->prefix, SD_PREFIX_CLIP);
    t->final_norm = 1;
    t->penultimate = 0;
}

static void sd1_after_derive(sd_model *m)
{
    if (m->has_unet && m->unet.num_heads <= 0 && m->unet.head_dim <= 0) m->unet.num_heads = 8;
    if (m->vae.scale_factor == 0) m->vae.scale_factor = 0.18215f;
}

static void sd1_default_prediction(sd_model *m)
{
    m->prediction = SD_PRED_EPS;
    snprintf(m->prediction_why, sizeof m->prediction_why, "SD 1.x models predict noise (eps)");
}

static int sd1_default_side(const sd_model *m, sd_prediction pred)
{
    (void)m, (void)pred;
    return 512;
}

const sd_family_desc sd_family_sd1 = {
    .id = SD_FAMILY_SD1,
    .name = "sd1",
    .display = "SD 1.x",
    .supported = 1,
    .matches = sd1_matches,
    .matches_folder = sd1_matches_folder,
    .before_derive = sd1_before_derive,
    .after_derive = sd1_after_derive,
    .default_prediction = sd1_default_prediction,
    .default_side = sd1_default_side,
    .condition = sd_text_condition,
    .denoise = sd_unet_forward,
    .text_prefix = "cond_stage_model.",
};
