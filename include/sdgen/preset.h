/* sdgen/preset.h — few-step presets: the settings distilled models are made for.
 *
 *   turbo     SD-Turbo / SDXL-Turbo: euler_a, trailing timesteps, 1 step, guidance off
 *   lcm       LCM / LCM-LoRA: the lcm sampler, 4 steps, CFG 1.5
 *   lightning SDXL-Lightning / Hyper: euler, trailing timesteps, 4 steps, guidance off
 *
 * A preset fills only what the user did not set (the `set` mask); "guidance off" is written as CFG 1,
 * which every family, diffusers (guidance_scale ≤ 1) and A1111 (scale 1: the conditional output)
 * alike run without the negative pass (docs/SEMANTICS.md). */
#ifndef SDGEN_PRESET_H
#define SDGEN_PRESET_H

#include <stddef.h>

#include "sdgen/model.h"
#include "sdgen/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sd_batch_item;

typedef enum sd_preset { SD_PRESET_NONE = 0, SD_PRESET_TURBO, SD_PRESET_LCM, SD_PRESET_LIGHTNING } sd_preset;

/* Bits of the settings a user gave explicitly. */
enum { SD_SET_STEPS = 1, SD_SET_CFG = 2, SD_SET_SAMPLER = 4, SD_SET_SCHEDULE = 8, SD_SET_SPACING = 16 };

/* "turbo", "lcm", "lightning", or "none" (no preset, also none from the model); case-insensitive.
 * 0 ok, −1 unknown. */
int sd_preset_parse(const char *name, sd_preset *out);
const char *sd_preset_name(sd_preset p);
/* Fill the preset's settings that are not in `set`. */
void sd_preset_apply(sd_preset p, unsigned set, sd_gen_opts *o);
/* A batch line's "preset" (sdgen/batch.h) on its options o, after the line's own keys are applied:
 * fills the preset's settings that neither the line (its sampler, schedule, timestep_spacing, steps,
 * cfg_scale keys; a "... Karras" sampler name sets the schedule) nor the command line (cli_set) gives.
 * "none" puts those settings back to sdgen's defaults (sd_gen_opts_default), so the line runs without the
 * command line's or the model's preset. No "preset" key: o is left as it is. */
void sd_preset_apply_item(const struct sd_batch_item *it, unsigned cli_set, sd_gen_opts *o);
/* The preset a model file names in its Stability "modelspec" metadata (modelspec.architecture, then
 * modelspec.title: the word turbo, lcm or lightning in it, as in "stable-diffusion-xl-v1-base/lcm"),
 * or SD_PRESET_NONE; why (may be NULL) gets "modelspec.KEY \"VALUE\"". */
sd_preset sd_preset_from_model(const sd_model *m, char *why, size_t n);

#ifdef __cplusplus
}
#endif
#endif
