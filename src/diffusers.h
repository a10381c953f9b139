/* diffusers.h — reading diffusers folders (diffusers.c); used by model.c. */
#ifndef SDGEN_DIFFUSERS_H
#define SDGEN_DIFFUSERS_H

#include <stddef.h>

#include "sdgen/model.h"

/* What the name translation needs to know about the folder's architecture. */
typedef struct sd_diffusers_layout {
    int unet_res_blocks;                /* layers_per_block */
    int unet_up_attn[SD_MAX_LEVELS];    /* up_blocks[i] has attentions (diffusers order) */
    int vae_levels;
} sd_diffusers_layout;

/* Fill m->unet / m->vae / m->text / m->sched (+ prediction) from the folder's config.json files. */
int sd_diffusers_read_configs(const char *dir, sd_model *m, sd_diffusers_layout *lay, sd_err *err);

/* Translate a tensor name of component "unet" | "vae" | "text_encoder" to its LDM name.
 * *to_conv1x1 = 1 when LDM stores the tensor as a 1×1 conv ([C,C] -> [C,C,1,1]).
 * Returns -1 for names with no LDM counterpart. */
int sd_diffusers_ldm_name(const char *component, const char *name, const sd_diffusers_layout *lay, char *out,
                          size_t cap, int *to_conv1x1);

#endif
