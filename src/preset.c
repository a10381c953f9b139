/* preset.c — few-step presets (sdgen/preset.h). Values from the model cards and diffusers' guides:
 * SDXL-Turbo / SD-Turbo run EulerAncestralDiscreteScheduler with "trailing" timesteps, 1 step and
 * guidance_scale 0 (diffusers docs, "SDXL Turbo"); LCM-LoRA runs LCMScheduler with 2–8 steps and
 * guidance disabled or 1–2 (diffusers docs, "Performing inference with LCM-LoRA"); SDXL-Lightning
 * runs EulerDiscreteScheduler with timestep_spacing "trailing", guidance_scale 0 and the step count
 * its checkpoint was distilled for (2, 4 or 8; the 4-step one here). */
#include "sdgen/preset.h"

#include "sdgen/batch.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    sd_sampler sampler;
    sd_spacing spacing;
    int steps;
    float cfg;
} k_presets[] = {
    [SD_PRESET_NONE] = {"none", SD_SAMPLER_EULER_A, SD_SPACING_DEFAULT, 0, 0},
    [SD_PRESET_TURBO] = {"turbo", SD_SAMPLER_EULER_A, SD_SPACING_TRAILING, 1, 1.0f},
    [SD_PRESET_LCM] = {"lcm", SD_SAMPLER_LCM, SD_SPACING_DEFAULT, 4, 1.5f},
    [SD_PRESET_LIGHTNING] = {"lightning", SD_SAMPLER_EULER, SD_SPACING_TRAILING, 4, 1.0f},
};

int sd_preset_parse(const char *name, sd_preset *out)
{
    for (int i = 0; name && i < (int)(sizeof k_presets / sizeof *k_presets); i++)
        if (!strcasecmp(name, k_presets[i].name)) {
            *out = (sd_preset)i;
            return 0;
        }
    return -1;
}

const char *sd_preset_name(sd_preset p)
{
    return (unsigned)p < sizeof k_presets / sizeof *k_presets ? k_presets[p].name : "unknown";
}

void sd_preset_apply(sd_preset p, unsigned set, sd_gen_opts *o)
{
    if (p == SD_PRESET_NONE || (unsigned)p >= sizeof k_presets / sizeof *k_presets) return;
    if (!(set & SD_SET_SAMPLER)) o->sampler = k_presets[p].sampler;
    if (!(set & SD_SET_SPACING)) o->spacing = k_presets[p].spacing;
    if (!(set & SD_SET_SCHEDULE)) o->schedule = SD_SCHEDULE_DEFAULT;
    if (!(set & SD_SET_STEPS)) o->steps = k_presets[p].steps;
    if (!(set & SD_SET_CFG)) o->cfg_scale = k_presets[p].cfg;
    /* a sampler chosen on the command line that has its own timestep grid keeps it (lcm refuses a spacing) */
    if (!(set & SD_SET_SPACING) && o->sampler == SD_SAMPLER_LCM) o->spacing = SD_SPACING_DEFAULT;
}

void sd_preset_apply_item(const sd_batch_item *it, unsigned cli_set, sd_gen_opts *o)
{
    sd_preset p;
    if (!it->preset || sd_preset_parse(it->preset, &p)) return; /* the batch parser refuses unknown names */
    unsigned set = cli_set;
    sd_schedule implied = SD_SCHEDULE_DEFAULT;
    sd_sampler smp;
    if (it->sampler) {
        set |= SD_SET_SAMPLER;
        if (sd_sampler_parse(it->sampler, &smp, &implied) == 0 && implied == SD_SCHEDULE_KARRAS) set |= SD_SET_SCHEDULE;
    }
    if (it->schedule) set |= SD_SET_SCHEDULE;
    if (it->timestep_spacing) set |= SD_SET_SPACING;
    if (it->has_steps) set |= SD_SET_STEPS;
    if (it->has_cfg_scale) set |= SD_SET_CFG;
    if (p != SD_PRESET_NONE) {
        sd_preset_apply(p, set, o);
        return;
    }
    /* none: what the command line would run without any preset */
    sd_gen_opts d;
    sd_gen_opts_default(&d);
    if (!(set & SD_SET_SAMPLER)) o->sampler = d.sampler;
    if (!(set & SD_SET_SPACING)) o->spacing = d.spacing;
    if (!(set & SD_SET_SCHEDULE)) o->schedule = d.schedule;
    if (!(set & SD_SET_STEPS)) o->steps = d.steps;
    if (!(set & SD_SET_CFG)) o->cfg_scale = d.cfg_scale;
}

/* Whether `word` occurs in s as a whole word (delimited by non-alphanumerics), ignoring case. */
static int has_word(const char *s, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = s; *p; p++) {
        if (strncasecmp(p, word, wl)) continue;
        int before = p == s || !isalnum((unsigned char)p[-1]);
        int after = !isalnum((unsigned char)p[wl]);
        if (before && after) return 1;
    }
    return 0;
}

sd_preset sd_preset_from_model(const sd_model *m, char *why, size_t n)
{
    static const char *const keys[] = {"modelspec.architecture", "modelspec.title"};
    if (why && n) why[0] = 0;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *v = sd_model_meta(m, keys[k]);
        if (!v) continue;
        sd_preset p = has_word(v, "turbo") ? SD_PRESET_TURBO
                      : has_word(v, "lcm") ? SD_PRESET_LCM
                      : has_word(v, "lightning") ? SD_PRESET_LIGHTNING
                                                 : SD_PRESET_NONE;
        if (p != SD_PRESET_NONE) {
            if (why && n) snprintf(why, n, "%s \"%.80s\"", keys[k], v);
            return p;
        }
    }
    return SD_PRESET_NONE;
}
