/* diffusers.h — reading diffusers folders (diffusers.c); used by model.c. */
#ifndef SDGEN_DIFFUSERS_H
#define SDGEN_DIFFUSERS_H

#include <stddef.h>

#include "sdgen/model.h"

/* Where an SDXL folder's text towers land: text_encoder under the name its single-file checkpoints
 * use (family_sdxl.c), text_encoder_2 (transformers CLIPTextModelWithProjection: the OpenCLIP ViT-bigG
 * tower under transformers names) beside it, with its text_projection Linear as
 * "<prefix>text_projection.weight" (clip.c reads it by the tower's prefix). */
#define SD_DIFFUSERS_SDXL_TEXT1 "conditioner.embedders.0.transformer.text_model."
#define SD_DIFFUSERS_SDXL_TEXT2 "conditioner.embedders.1.transformer.text_model."

/* What the name translation needs to know about the folder's architecture. */
typedef struct sd_diffusers_layout {
    int unet_res_blocks;                /* layers_per_block */
    int unet_up_attn[SD_MAX_LEVELS];    /* up_blocks[i] has attentions (diffusers order) */
    int vae_levels;
    int sdxl;                           /* unet addition_embed_type "text_time": SDXL names (family_sdxl.c) */
    int add_time_dim;                   /* its addition_time_embed_dim (SDXL: 256) */
} sd_diffusers_layout;

/* Fill m->unet / m->vae / m->text / m->sched (+ prediction) from the folder's config.json files. */
int sd_diffusers_read_configs(const char *dir, sd_model *m, sd_diffusers_layout *lay, sd_err *err);

/* Translate a tensor name of component "unet" | "vae" | "text_encoder" | "text_encoder_2" to its LDM name
 * (SGM names for an SDXL folder: the ones its single-file checkpoints use).
 * *to_conv1x1 = 1 when LDM stores the tensor as a 1×1 conv ([C,C] -> [C,C,1,1]).
 * Returns -1 for names with no LDM counterpart. */
int sd_diffusers_ldm_name(const char *component, const char *name, const sd_diffusers_layout *lay, char *out,
                          size_t cap, int *to_conv1x1);

#endif
