/* family.c — the table of model families and what they share (see sdgen/family.h). */
#include "sdgen/family.h"

#include <stdio.h>
#include <string.h>

/* Order matters: SDXL files carry names the others don't, SD 2.x files have OpenCLIP names. */
static const sd_family_desc *const sd_family_table[] = {&sd_family_sdxl, &sd_family_sd2, &sd_family_sd1};
#define N_FAMILIES (sizeof sd_family_table / sizeof sd_family_table[0])

const sd_family_desc *sd_family_get(sd_family f)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (sd_family_table[i]->id == f) return sd_family_table[i];
    return NULL;
}

const sd_family_desc *sd_family_detect(const sd_model *m)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (sd_family_table[i]->matches(m)) return sd_family_table[i];
    return NULL;
}

const sd_family_desc *sd_family_detect_folder(const sd_model *m)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (sd_family_table[i]->matches_folder && sd_family_table[i]->matches_folder(m)) return sd_family_table[i];
    return NULL;
}

const char *sd_family_name(sd_family f)
{
    const sd_family_desc *d = sd_family_get(f);
    return d ? d->name : "unknown";
}

void sd_family_default_size(const sd_model *m, sd_prediction pred, int *w, int *h)
{
    const char *res = sd_model_meta(m, "modelspec.resolution");
    int a, b;
    if (res && sscanf(res, "%dx%d", &a, &b) == 2 && a >= 8 && b >= 8 && a % 8 == 0 && b % 8 == 0 && a <= 8192 &&
        b <= 8192) {
        *w = a;
        *h = b;
        return;
    }
    const sd_family_desc *f = sd_family_get(m->family);
    *w = *h = f && f->default_side ? f->default_side(m, pred) : 512;
}

void sd_family_ldm_schedule(sd_sched_config *s)
{
    s->num_train_timesteps = 1000;
    s->beta_start = 0.00085;
    s->beta_end = 0.012;
    snprintf(s->beta_schedule, sizeof s->beta_schedule, "scaled_linear");
    s->steps_offset = 1;
}
