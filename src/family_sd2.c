/* family_sd2.c — Stable Diffusion 2.x (Stability v2-inference.yaml / v2-inference-v.yaml; 2.0, 2.1,
 * SD-Turbo and their fine-tunes).
 *
 * Text: OpenCLIP ViT-H/14 in OpenCLIP names under cond_stage_model.model., its penultimate block,
 * padded with id 0; U-Net attention with 64-wide heads (num_head_channels: 64) and linear
 * projections; VAE as SD 1.x (scale 0.18215). The 768×768 checkpoints (the common downloads) are
 * v-prediction, the 512-base ones eps: without a statement in the file, v and 768 are assumed. */
#include "sdgen/family.h"
#include "sdgen/unet.h"

#include <stdio.h>
#include <string.h>

static int sd2_matches(const sd_model *m)
{
    const size_t n = strlen(SD_PREFIX_OPENCLIP);
    for (int i = 0; i < m->n_weights; i++)
        if (!strncmp(m->weights[i].name, SD_PREFIX_OPENCLIP, n)) return 1;
    for (int i = 0; i < m->n_weights; i++)
        if (!strncmp(m->weights[i].name, "cond_stage_model.", 17)) return 0; /* another tower */
    const char *arch = sd_model_meta(m, "modelspec.architecture");
    if (arch) return strstr(arch, "stable-diffusion-v2") != NULL;
    return m->has_unet && (m->unet.linear_proj || m->unet.context_dim == 1024);
}

/* A folder whose text encoder pads with id 0 ("!" as pad token) or whose U-Net has linear
 * projections or 1024-wide context. */
static int sd2_matches_folder(const sd_model *m)
{
    return m->unet.linear_proj || m->text[0].pad_id == 0 || m->unet.context_dim == 1024;
}

static void sd2_before_derive(sd_model *m)
{
    sd_text_config *t = &m->text[0];
    t->kind = SD_TEXT_OPENCLIP;
    snprintf(t->prefix, sizeof t->prefix, SD_PREFIX_OPENCLIP);
    t->final_norm = 1;
    t->penultimate = 1; /* FrozenOpenCLIPEmbedder(layer="penultimate") */
}

static void sd2_after_derive(sd_model *m)
{
    if (m->has_unet && m->unet.num_heads <= 0 && m->unet.head_dim <= 0) m->unet.head_dim = 64;
    if (m->vae.scale_factor == 0) m->vae.scale_factor = 0.18215f;
}

static void sd2_default_prediction(sd_model *m)
{
    m->prediction = SD_PRED_V;
    snprintf(m->prediction_why, sizeof m->prediction_why,
             "SD 2.x default: the common 768-v checkpoints are v-prediction (use --prediction eps for 512-base files)");
}

static int sd2_default_side(const sd_model *m, sd_prediction pred)
{
    (void)m;
    return pred == SD_PRED_V ? 768 : 512;
}

const sd_family_desc sd_family_sd2 = {
    .id = SD_FAMILY_SD2,
    .name = "sd2",
    .display = "SD 2.x",
    .supported = 1,
    .matches = sd2_matches,
    .matches_folder = sd2_matches_folder,
    .before_derive = sd2_before_derive,
    .after_derive = sd2_after_derive,
    .default_prediction = sd2_default_prediction,
    .default_side = sd2_default_side,
    .condition = sd_text_condition,
    .denoise = sd_unet_forward,
    .text_prefix = "cond_stage_model.",
};
