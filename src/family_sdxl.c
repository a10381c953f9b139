/* family_sdxl.c — Stable Diffusion XL (Stability sd_xl_base.yaml; base 1.0, Turbo and fine-tunes).
 *
 * Recognised from its single-file layout (conditioner.embedders.* text encoders) or modelspec
 * metadata, and described by `sdgen info`; the generator does not run it yet (supported = 0), so
 * no network sizes are derived. Its defaults are those of the base model: eps prediction,
 * 1024×1024 images. */
#include "sdgen/family.h"

#include <stdio.h>
#include <string.h>

static int sdxl_matches(const sd_model *m)
{
    for (int i = 0; i < m->n_weights; i++)
        if (!strncmp(m->weights[i].name, "conditioner.embedders.", 22)) return 1;
    const char *arch = sd_model_meta(m, "modelspec.architecture");
    return arch && strstr(arch, "stable-diffusion-xl") != NULL;
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

const sd_family_desc sd_family_sdxl = {
    .id = SD_FAMILY_SDXL,
    .name = "sdxl",
    .display = "SDXL",
    .supported = 0,
    .matches = sdxl_matches,
    .default_prediction = sdxl_default_prediction,
    .default_side = sdxl_default_side,
};
